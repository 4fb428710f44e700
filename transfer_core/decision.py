"""The operating point of a two-class run: which class is the one to find (defect, spam) and from what
probability of it the model says so. Without a saved rule a run predicts its most probable class, which
for two classes is the threshold 0.5.

The rule is chosen on the validation predictions (predictions.csv), from the precision-recall curve,
either as a threshold or as the smallest recall to reach; it is saved in the run's decision.json and
used by predict, evaluate and the export bundle (its decision.json and predict.py).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .errors import RunError
from .evaluate import PROB_PREFIX
from .run_files import DECISION_FILE


@dataclass(frozen=True)
class DecisionRule:
    positive: str                        # the class to find
    threshold: float                     # predict `positive` when its probability is at least this
    target_recall: float | None = None   # set when the threshold was chosen to reach this recall

    def predict(self, probs: np.ndarray, classes: list[str]) -> np.ndarray:
        """Class indices (N,) for probabilities (N, 2) in `classes` order."""
        pos = classes.index(self.positive)
        return np.where(probs[:, pos] >= self.threshold, pos, 1 - pos).astype(np.int64)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def check_rule(rule: DecisionRule, classes: list[str]) -> DecisionRule:
    """The rule, if it fits a model with these classes; a RunError saying what to change otherwise."""
    if len(classes) != 2:
        raise RunError(f"a decision threshold needs a two-class model, and this one has {len(classes)} classes")
    if rule.positive not in classes:
        raise RunError(f"the class to find must be one of the model's classes ({', '.join(classes)}), "
                       f"not {rule.positive!r}")
    if not (isinstance(rule.threshold, (int, float)) and math.isfinite(rule.threshold) and 0 <= rule.threshold <= 1):
        raise RunError(f"the threshold must be a probability between 0 and 1, not {rule.threshold}")
    if rule.target_recall is not None and not 0 < rule.target_recall <= 1:
        raise RunError(f"the target recall must be above 0 and at most 1, not {rule.target_recall}")
    return rule


def predicted_classes(probs: np.ndarray, classes: list[str], rule: DecisionRule | None) -> np.ndarray:
    """The run's decisions: the rule's for a two-class run that has one, else the most probable class."""
    if rule is None or not len(probs):
        return probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    return rule.predict(probs, classes)


# ---- the run's file -------------------------------------------------------

def read_rule(run_dir: Path, classes: list[str]) -> DecisionRule | None:
    """The saved rule of a run (None: it predicts its most probable class); an unusable file is an error."""
    path = Path(run_dir) / DECISION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rule = DecisionRule(str(data["positive"]), float(data["threshold"]),
                            None if data.get("target_recall") is None else float(data["target_recall"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path} is not a decision rule ({type(exc).__name__}); delete it or set the threshold again "
                       f"(`python -m transfer_core threshold --run RUN_ID --clear`)") from None
    return check_rule(rule, classes)


def write_rule(run_dir: Path, rule: DecisionRule | None) -> None:
    """Save the rule (None: back to the most probable class)."""
    path = Path(run_dir) / DECISION_FILE
    if rule is None:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rule.to_dict(), indent=2) + "\n", encoding="utf-8")


# ---- choosing it on validation predictions -----------------------------------

@dataclass
class ValidationScores:
    """What the validation predictions say about the class to find."""
    positive: str
    scores: np.ndarray      # the probability of `positive`, per labelled sample
    is_positive: np.ndarray  # bool, per labelled sample

    @classmethod
    def from_predictions(cls, frame: pd.DataFrame, classes: list[str], positive: str) -> ValidationScores:
        check_rule(DecisionRule(positive, 0.5), classes)
        column = PROB_PREFIX + positive
        if column not in frame.columns:
            raise RunError(f"the run's predictions have no probabilities of {positive!r}; train the run again")
        known = frame["true"].isin(classes)
        scores = frame.loc[known, column].to_numpy(dtype=np.float64)
        return cls(positive, scores, (frame.loc[known, "true"] == positive).to_numpy())

    def check_usable(self) -> None:
        if not self.is_positive.any() or self.is_positive.all():
            raise RunError(f"the validation data needs examples of both classes to choose a threshold, and "
                           f"{'none' if not self.is_positive.any() else 'all'} are {self.positive!r}; "
                           f"use a larger validation share or a validation file with both")

    def curve(self) -> pd.DataFrame:
        """The precision-recall curve: one row per threshold, lowest threshold first (scikit-learn's)."""
        from sklearn.metrics import precision_recall_curve

        self.check_usable()
        precision, recall, thresholds = precision_recall_curve(self.is_positive, self.scores)
        return pd.DataFrame({"threshold": thresholds, "precision": precision[:-1], "recall": recall[:-1]})

    def average_precision(self) -> float:
        from sklearn.metrics import average_precision_score

        self.check_usable()
        return float(average_precision_score(self.is_positive, self.scores))

    def threshold_for_recall(self, target: float) -> float:
        """The highest threshold that finds at least `target` of the class (the best precision at that recall)."""
        if not 0 < target <= 1:
            raise RunError(f"the target recall must be above 0 and at most 1, not {target}")
        curve = self.curve()
        reaching = curve[curve["recall"] >= target - 1e-12]
        return float(reaching["threshold"].max())

    def at(self, threshold: float) -> dict:
        """Precision, recall, F1, accuracy and the counts when `positive` is predicted from `threshold` on."""
        said = self.scores >= threshold
        tp, fp = int((said & self.is_positive).sum()), int((said & ~self.is_positive).sum())
        fn, tn = int((~said & self.is_positive).sum()), int((~said & ~self.is_positive).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total = tp + fp + fn + tn
        return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1,
                "accuracy": (tp + tn) / total if total else None, "found": tp, "missed": fn,
                "false_alarms": fp, "correct_rejections": tn}


def default_positive(classes: list[str], frame: pd.DataFrame | None = None) -> str:
    """The class to find when the user has not said: the rarer one in the validation data (ties: the second)."""
    if frame is not None:
        counts = frame["true"].value_counts()
        first, second = (int(counts.get(c, 0)) for c in classes)
        if first < second:
            return classes[0]
    return classes[1]
