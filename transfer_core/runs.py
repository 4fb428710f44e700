"""Working with finished runs: load the trained model, evaluate it on new data, predict, export."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from .config import RunConfig
from .data.splits import merge_labels
from .decision import (
    DecisionRule,
    ValidationScores,
    check_rule,
    default_positive,
    predicted_classes,
    read_rule,
    write_rule,
)
from .errors import RunError, RunFilesMissing
from .evaluate import compute_metrics, load_predictions, predict_dataset, predict_inputs, top_losses
from .export import ExportResult, export_bundle
from .models import build_model
from .models.base import BuiltModel
from .paths import check_allowed
from .preparation import load_configured
from .run_files import CONFIG_FILE, LABELS_FILE, METRICS_FILE, PREDICTIONS_FILE, WEIGHTS_FILE
from .store import RunStore


def run_config(store: RunStore, run_id: str) -> RunConfig:
    return RunConfig.of_saved_run(store.get_run(run_id).config)


def load_run_model(store: RunStore, run_id: str) -> BuiltModel:
    """The trained network of a run, on the CPU, in eval mode."""
    run_dir = store.run_dir(store.get_run(run_id).id)
    if not run_dir.is_dir():
        raise RunFilesMissing(store.get_run(run_id).id, run_dir)   # a resume could not bring them back
    weights = run_dir / WEIGHTS_FILE
    if not weights.exists():
        raise RunError(f"run {run_id} has no trained weights yet; wait for it to finish or resume it")
    cfg = RunConfig.of_saved_run(json.loads((run_dir / CONFIG_FILE).read_text()))
    classes = json.loads((run_dir / LABELS_FILE).read_text())
    built = build_model(cfg.model.name, classes, pretrained=False, head_dropout=cfg.model.head_dropout,
                        head_hidden=cfg.model.head_hidden, image_size=cfg.model.image_size, max_length=cfg.model.max_length, runs_dir=store.root,
                        pooling=cfg.model.pooling, feature_layer=cfg.model.feature_layer)
    built.net.load_state_dict(load_file(str(weights)))
    built.net.eval()
    return built


def evaluate_run(store: RunStore, run_id: str, data_path: str, *, allowed_roots: list | None = None) -> dict:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of a trained run on labelled data.
    `allowed_roots` (a front end's folders; None: anywhere) as for load_dataset."""
    built = load_run_model(store, run_id)
    cfg = run_config(store, run_id)
    dataset = load_configured(data_path, cfg, allowed_roots=allowed_roots)
    if cfg.data.merge_case:   # trained with "Cat" and "cat" as one class: score new data the same way
        by_case = {c.casefold(): c for c in built.classes}
        dataset = merge_labels(dataset, {label: by_case[label.casefold()] for label in dataset.classes
                                         if label not in built.classes and label.casefold() in by_case})
    if dataset.modality != built.modality:
        raise RunError(f"run {run_id} classifies {built.modality}s but {data_path} holds {dataset.modality}s; give {built.modality} data")
    unknown = sorted(set(dataset.classes) - set(built.classes))
    if unknown:
        raise RunError(f"{data_path} has labels the run never saw: {', '.join(unknown[:5])}; "
                       f"it knows: {', '.join(built.classes)}")
    preds = predict_dataset(built, dataset)
    rule = run_rule(store, run_id)
    metrics = compute_metrics(preds.true, predicted_classes(preds.probs, built.classes, rule), built.classes)
    if rule is not None:
        metrics["decision"] = rule.to_dict()
    metrics["top_losses"] = top_losses(preds, dataset, k=10)
    return metrics


def predict_run(store: RunStore, run_id: str, inputs: list, top_k: int = 3, *,
                allowed_roots: list | None = None) -> list[dict]:
    """For each input (image path or text): the top-k labels with probabilities. With `allowed_roots`
    (a front end's folders; None: anywhere), an image path outside them is refused."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        # A slice with a negative end would quietly drop classes instead.
        raise RunError(f"top-k must be a whole number of 1 or more, not {top_k}; give e.g. --top-k 3")
    built = load_run_model(store, run_id)
    if built.modality == "image":
        paths = [x for x in inputs if isinstance(x, (str, Path))]
        if allowed_roots is not None:
            for path in paths:
                check_allowed(path, allowed_roots, what="input", error=RunError)
        missing = [x for x in paths if not Path(x).is_file()]
        if missing:
            raise RunError(f"no image file at {missing[0]}; give paths of image files")
    probs = predict_inputs(built, list(inputs))
    decided = predicted_classes(probs, built.classes, run_rule(store, run_id))
    out = []
    for item, row, label in zip(inputs, probs, decided):
        order = row.argsort()[::-1][:top_k]
        out.append({"input": str(item) if not isinstance(item, str) else item, "label": built.classes[int(label)],
                    "top": [{"label": built.classes[i], "probability": round(float(row[i]), 6)} for i in order]})
    return out


def export_run(store: RunStore, run_id: str, out_dir: str | Path) -> ExportResult:
    record = store.get_run(run_id)
    built = load_run_model(store, record.id)
    metrics_path = store.run_dir(record.id) / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()).get("summary", {}) if metrics_path.exists() else {}
    run_info = {"run_id": record.id, "name": record.name, "model": record.model, "config": record.config, "metrics": metrics}
    return export_bundle(built, Path(out_dir), run_info=run_info, decision=run_rule(store, record.id))


def run_coach_notes(store: RunStore, run_id: str) -> list:
    """The coach's notes (coach.py) on a run that has ended, from its metrics.json: its epochs and its final
    validation confusion matrix."""
    from .coach import coach_notes
    path = store.run_dir(store.get_run(run_id).id) / METRICS_FILE
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text(encoding="utf-8"))
    val = metrics.get("val") or {}
    classes = val.get("classes") or []
    return coach_notes(metrics.get("history") or [], len(classes), val.get("confusion_matrix"), classes)


def explain_run(store: RunStore, run_id: str, inputs: list, *, target: str | None = None,
                out_dir: str | Path | None = None, allowed_roots: list | None = None) -> list[dict]:
    """For each input (an image path or a text): what the model predicts and why (explain.py). Image heatmaps
    are drawn over the image and saved as PNG files in `out_dir`; text token scores come back in the rows
    (and, with `out_dir`, as one JSON file per text)."""
    from .explain import explain, overlay
    built = load_run_model(store, run_id)
    if built.modality == "image":
        for path in inputs:
            if allowed_roots is not None:
                check_allowed(path, allowed_roots, what="input", error=RunError)
            if not Path(path).is_file():
                raise RunError(f"no image file at {path}; give paths of image files")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, item in enumerate(inputs, start=1):
        found = explain(built, str(item), target)
        row = {"input": str(item), "predicted": found.predicted, "probability": round(found.probability, 6),
               "target": found.target, "target_probability": round(found.target_probability, 6), "method": found.method}
        if found.tokens is not None:
            row["tokens"] = [[token, round(score, 4)] for token, score in found.tokens]
            if out is not None:
                (out / f"text-{number}.json").write_text(json.dumps(row, ensure_ascii=False, indent=1), encoding="utf-8")
        elif out is not None:
            file = out / f"{number}-{Path(item).stem[:60]}-{_file_part(found.target)}.png"
            overlay(found).save(file)
            row["file"] = str(file)
        rows.append(row)
    return rows


def _file_part(label: str) -> str:
    """A class name as part of a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40] or "class"


# ---- the decision threshold of a two-class run (decision.py) ----------------
def run_classes(store: RunStore, run_id: str) -> list[str]:
    path = store.run_dir(store.get_run(run_id).id) / LABELS_FILE
    if not path.is_file():
        raise RunError(f"run {run_id} has no labels.json yet; wait for it to start training")
    return json.loads(path.read_text(encoding="utf-8"))


def run_rule(store: RunStore, run_id: str) -> DecisionRule | None:
    """The run's saved decision threshold; None: it predicts its most probable class."""
    return read_rule(store.run_dir(store.get_run(run_id).id), run_classes(store, run_id))


def validation_scores(store: RunStore, run_id: str, positive: str | None = None) -> ValidationScores:
    """The validation probabilities of the class to find (default: the saved rule's, else the rarer class)."""
    classes = run_classes(store, run_id)
    path = store.run_dir(store.get_run(run_id).id) / PREDICTIONS_FILE
    if not path.is_file():
        raise RunError(f"run {run_id} has no validation predictions yet; a threshold is chosen once it has finished")
    frame = load_predictions(path)
    if positive is None:
        saved = run_rule(store, run_id) if len(classes) == 2 else None
        positive = saved.positive if saved else default_positive(classes, frame) if len(classes) == 2 else ""
    return ValidationScores.from_predictions(frame, classes, positive)


def set_threshold(store: RunStore, run_id: str, *, positive: str | None = None, threshold: float | None = None,
                  recall: float | None = None) -> dict:
    """Save a two-class run's decision threshold: given, or the highest one reaching `recall` on the validation
    data. Returns the rule and what it gives on the validation data."""
    _refuse_while_training(store, run_id)
    scores = validation_scores(store, run_id, positive)
    scores.check_usable()   # (a validation set of one class can choose nothing: refused before anything is saved)
    if recall is not None and threshold is None:
        chosen = scores.threshold_for_recall(recall)
    elif threshold is not None and recall is None:
        chosen = float(threshold)
    else:
        raise RunError("give either a threshold (--threshold 0.3) or a recall to reach (--recall 0.95)")
    rule = check_rule(DecisionRule(scores.positive, chosen, recall), run_classes(store, run_id))
    write_rule(store.run_dir(store.get_run(run_id).id), rule)
    return decision_summary(store, run_id, scores)


def clear_threshold(store: RunStore, run_id: str) -> dict:
    """Back to the most probable class (the threshold 0.5 for two classes)."""
    run_classes(store, run_id)
    _refuse_while_training(store, run_id)
    write_rule(store.run_dir(store.get_run(run_id).id), None)
    return {"run_id": store.get_run(run_id).id, "decision": None}


def _refuse_while_training(store: RunStore, run_id: str) -> None:
    """A threshold is chosen for the weights a run has; a run training again is about to change them."""
    record = store.get_run(run_id)
    if record.is_active:
        raise RunError(f"run {record.id} is {record.status}; choose its threshold once it has finished, on the "
                       f"predictions of its new weights")


def decision_summary(store: RunStore, run_id: str, scores: ValidationScores | None = None) -> dict:
    """The saved rule and, on the validation data, what it gives against the default 0.5."""
    rule = run_rule(store, run_id)
    scores = scores or validation_scores(store, run_id)
    threshold = rule.threshold if rule and rule.positive == scores.positive else 0.5
    return {"run_id": store.get_run(run_id).id, "positive": scores.positive,
            "decision": rule.to_dict() if rule else None,
            "average_precision": round(scores.average_precision(), 6),
            "validation": _rounded(scores.at(threshold)),
            "validation_at_0.5": _rounded(scores.at(0.5))}


def _rounded(numbers: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in numbers.items()}
