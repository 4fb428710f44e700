"""A coach beside the curves: plain-language notes on how a run is going, each with what to try. They read only
what every run records (its epochs' losses and accuracies, and at the end its validation confusion matrix), so
the app, the command line and a finished run's page say the same.

Each rule looks at the epochs so far; a note names its evidence in numbers, since a teacher may have to explain
it. The rules follow the usual reading of learning curves (e.g. fastai's and Karpathy's "recipe"):
- diverging: the training loss became non-finite or rose far above its best (the learning rate is too high);
- overfitting: validation loss rising for two epochs while training loss keeps falling;
- stalled: validation accuracy has not improved for several epochs;
- near chance: training accuracy close to guessing after a few epochs (rate too low, or labels that do not
  match the inputs);
- a class never predicted (at the end of the run, from its confusion matrix).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DIVERGE_FACTOR = 2.0    # training loss this many times its best (and above chance): blowing up
STALL_EPOCHS = 3        # epochs without a better validation accuracy
CHANCE_MARGIN = 1.5     # training accuracy below this many times chance after CHANCE_EPOCHS: not learning
CHANCE_EPOCHS = 3


@dataclass(frozen=True)
class CoachNote:
    kind: str        # diverging, overfitting, stalled, near_chance, class_never_predicted
    message: str     # what is happening, with its numbers
    advice: str      # what to try

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "advice": self.advice}


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def coach_notes(history: list[dict], num_classes: int, confusion: list[list[int]] | None = None,
                classes: list[str] | None = None) -> list[CoachNote]:
    """Notes for a run's epochs so far (rows with train_loss, train_accuracy, val_loss, val_accuracy), and
    for its final validation confusion matrix when given."""
    notes = [note for rule in (_diverging, _overfitting, _stalled, _near_chance)
             if (note := rule(history, num_classes)) is not None]
    if confusion and classes:
        notes += _never_predicted(confusion, classes)
    return notes


def _diverging(history: list[dict], num_classes: int) -> CoachNote | None:
    losses = [row.get("train_loss") for row in history]
    if not losses:
        return None
    last = losses[-1]
    finite = _finite(losses)
    if isinstance(last, (int, float)) and not math.isfinite(last):
        return CoachNote("diverging", f"The training loss became {last} in epoch {len(history)}.",
                         "The learning rate is far too high: lower it ten times (or use Find a learning rate), "
                         "or limit each step with gradient clipping.")
    if len(finite) >= 2 and finite[-1] > DIVERGE_FACTOR * min(finite) and finite[-1] > math.log(max(2, num_classes)):
        return CoachNote("diverging", f"The training loss rose to {finite[-1]:.2f}, {finite[-1] / min(finite):.1f} "
                                      f"times its best ({min(finite):.2f}).",
                         "The learning rate is too high: lower it (ten times is a good first step), or use Find a "
                         "learning rate on the Train page.")
    return None


def _overfitting(history: list[dict], num_classes: int) -> CoachNote | None:
    rows = [r for r in history if _finite([r.get("train_loss"), r.get("val_loss")]).__len__() == 2]
    if len(rows) < 3:
        return None
    val = [r["val_loss"] for r in rows]
    train = [r["train_loss"] for r in rows]
    best = min(range(len(val)), key=val.__getitem__)
    if best <= len(val) - 3 and val[-1] > val[-2] > val[best] and train[-1] < train[best]:
        return CoachNote("overfitting", f"Validation loss has risen since epoch {best + 1} ({val[best]:.3f} to "
                                        f"{val[-1]:.3f}) while training loss kept falling ({train[best]:.3f} to "
                                        f"{train[-1]:.3f}): the model is memorising its training examples.",
                         "Freeze more layers, turn on augmentation, add data, or use early stopping so the run keeps "
                         "its best epoch.")
    return None


def _stalled(history: list[dict], num_classes: int) -> CoachNote | None:
    accuracy = [r.get("val_accuracy") for r in history]
    if len(accuracy) <= STALL_EPOCHS or not _finite(accuracy):
        return None
    best_before = max(_finite(accuracy[:-STALL_EPOCHS]), default=-1.0)
    recent = _finite(accuracy[-STALL_EPOCHS:])
    if recent and max(recent) <= best_before and best_before < 1.0:
        return CoachNote("stalled", f"Validation accuracy has not improved for {STALL_EPOCHS} epochs (best "
                                    f"{best_before:.1%}, last {recent[-1]:.1%}).",
                         "More epochs of the same will not help much: lower the learning rate (or use a schedule that "
                         "does), unfreeze more layers, or stop here; early stopping ends such runs by itself.")
    return None


def _near_chance(history: list[dict], num_classes: int) -> CoachNote | None:
    if len(history) < CHANCE_EPOCHS or num_classes < 2:
        return None
    accuracy = _finite([history[-1].get("train_accuracy")])
    chance = 1.0 / num_classes
    if accuracy and accuracy[0] < CHANCE_MARGIN * chance:
        return CoachNote("near_chance", f"After {len(history)} epochs the training accuracy is {accuracy[0]:.1%}, "
                                        f"close to guessing among {num_classes} classes ({chance:.1%}).",
                         "The learning rate may be far too low (try Find a learning rate), the frozen layers may not "
                         "fit this data (unfreeze some), or the labels may not match the inputs (check the Data page's "
                         "examples).")
    return None


def _never_predicted(confusion: list[list[int]], classes: list[str]) -> list[CoachNote]:
    predicted = [sum(row[j] for row in confusion) for j in range(len(classes))]
    present = [sum(row) for row in confusion]
    missing = [c for c, p, n in zip(classes, predicted, present) if p == 0 and n > 0]
    if not missing:
        return []
    shown = ", ".join(f"'{c}'" for c in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [CoachNote("class_never_predicted", f"The model never predicts {shown} on the validation data, though "
                                               f"{'it has' if len(missing) == 1 else 'they have'} examples there.",
                      "Such a class is usually too small or too like another: add examples of it, turn on class balance "
                      "(Train page), or train more layers.")]
