"""The decision threshold of a two-class run (decision.py): chosen on the validation data, saved with the run,
used by predict, evaluate, the CLI and the export bundle's predict.py (real runs, files and subprocesses)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_cli import cli
from test_export import run_predict_script
from test_trainer import image_config

from transfer_core.decision import DecisionRule, ValidationScores, check_rule, predicted_classes
from transfer_core.errors import RunError
from transfer_core.evaluate import load_predictions, predict_inputs
from transfer_core.events import RunStatus
from transfer_core.run_files import DECISION_FILE, PREDICTIONS_FILE
from transfer_core.runs import (
    clear_threshold,
    decision_summary,
    evaluate_run,
    export_run,
    load_run_model,
    predict_run,
    run_rule,
    set_threshold,
    validation_scores,
)
from transfer_core.trainer import fit

CLASSES = ["defect", "ok"]


@pytest.fixture(scope="module")
def parts_folder(tmp_path_factory):
    """Two classes as a parts inspection has them: 'ok' (digit 0) outnumbers 'defect' (digit 8) three to one."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    root = tmp_path_factory.mktemp("parts")
    for label, digit, count in (("ok", 0, 60), ("defect", 8, 20)):
        (root / label).mkdir()
        for i in np.flatnonzero(digits.target == digit)[:count]:
            pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((16, 16)).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def parts_run(parts_folder, tmp_path_factory):
    from transfer_core.store import RunStore
    store = RunStore(tmp_path_factory.mktemp("parts-runs"))
    result = fit(image_config(parts_folder, train__epochs=2, data__val_fraction=0.3), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    return store, result.run_id


def scores_of(true: list[str], p_defect: list[float]) -> ValidationScores:
    frame = pd.DataFrame({"true": true, "prob_defect": p_defect, "prob_ok": [1 - p for p in p_defect]})
    return ValidationScores.from_predictions(frame, CLASSES, "defect")


def test_the_curve_is_scikit_learns_and_a_recall_picks_its_highest_threshold():
    from sklearn.metrics import precision_recall_curve
    true = ["defect", "ok", "defect", "ok", "defect", "ok", "ok", "defect"]
    p = [0.9, 0.8, 0.6, 0.4, 0.35, 0.3, 0.1, 0.05]
    scores = scores_of(true, p)
    precision, recall, thresholds = precision_recall_curve([t == "defect" for t in true], p)
    curve = scores.curve()
    np.testing.assert_allclose(curve["threshold"], thresholds)
    np.testing.assert_allclose(curve["precision"], precision[:-1])
    np.testing.assert_allclose(curve["recall"], recall[:-1])
    assert scores.threshold_for_recall(0.5) == 0.6        # 2 of 4 defects at 0.6; at 0.8 only 1
    assert scores.threshold_for_recall(0.75) == 0.35
    assert scores.threshold_for_recall(1.0) == 0.05       # every defect, whatever it costs in false alarms
    at = scores.at(0.35)
    assert (at["found"], at["missed"], at["false_alarms"], at["correct_rejections"]) == (3, 1, 2, 2)
    assert at["precision"] == pytest.approx(3 / 5) and at["recall"] == pytest.approx(3 / 4)


def test_the_rule_decides_from_the_threshold_and_0_5_is_the_most_probable_class():
    probs = np.array([[0.3, 0.7], [0.31, 0.69], [0.6, 0.4], [0.2, 0.8]], dtype=np.float32)
    rule = DecisionRule("defect", 0.3)
    assert [CLASSES[i] for i in predicted_classes(probs, CLASSES, rule)] == ["defect", "defect", "defect", "ok"]
    np.testing.assert_array_equal(predicted_classes(probs, CLASSES, DecisionRule("defect", 0.5)), probs.argmax(1))
    np.testing.assert_array_equal(predicted_classes(probs, CLASSES, None), probs.argmax(1))
    # The class to find may be either output.
    assert [CLASSES[i] for i in DecisionRule("ok", 0.75).predict(probs, CLASSES)] == ["defect", "defect", "defect", "ok"]


@pytest.mark.parametrize("rule, classes, words", [
    (DecisionRule("defect", 0.3), ["a", "b", "c"], "two-class model"),
    (DecisionRule("scratch", 0.3), CLASSES, "one of the model's classes"),
    (DecisionRule("defect", -0.1), CLASSES, "between 0 and 1"),
    (DecisionRule("defect", 1.5), CLASSES, "between 0 and 1"),
    (DecisionRule("defect", float("nan")), CLASSES, "between 0 and 1"),
    (DecisionRule("defect", 0.4, target_recall=1.5), CLASSES, "target recall"),
])
def test_a_rule_that_cannot_apply_is_refused_in_one_line(rule, classes, words):
    with pytest.raises(RunError, match=words) as info:
        check_rule(rule, classes)
    assert "\n" not in str(info.value)


def test_validation_with_one_class_only_cannot_choose_a_threshold():
    with pytest.raises(RunError, match="both classes"):
        scores_of(["ok", "ok"], [0.2, 0.4]).curve()


def test_a_saved_threshold_is_used_by_predict_evaluate_and_the_bundle(parts_run, parts_folder, tmp_path):
    store, run_id = parts_run
    run_dir = store.run_dir(run_id)
    preds = load_predictions(run_dir / PREDICTIONS_FILE)
    summary = set_threshold(store, run_id, positive="defect", recall=1.0)
    rule = run_rule(store, run_id)
    assert rule is not None and rule.positive == "defect" and rule.target_recall == 1.0
    # Every validation defect is found, and no higher threshold finds them all.
    defects = preds[preds["true"] == "defect"]
    assert rule.threshold == pytest.approx(defects["prob_defect"].min())
    assert summary["validation"]["recall"] == 1.0 and summary["validation"]["missed"] == 0
    assert json.loads((run_dir / DECISION_FILE).read_text())["threshold"] == rule.threshold

    images = sorted(str(p) for p in parts_folder.glob("*/*.png"))[:40:3]
    predicted = predict_run(store, run_id, images, top_k=2)
    built = load_run_model(store, run_id)
    probs = predict_inputs(built, images)
    expected = [built.classes[i] for i in rule.predict(probs, built.classes)]
    assert [row["label"] for row in predicted] == expected
    metrics = evaluate_run(store, run_id, str(parts_folder))
    assert metrics["decision"] == rule.to_dict()
    defect = built.classes.index("defect")
    assert metrics["per_class"]["defect"]["support"] == sum(np.array(metrics["confusion_matrix"])[defect])

    bundle = export_run(store, run_id, tmp_path / "bundle").path
    assert json.loads((bundle / DECISION_FILE).read_text()) == rule.to_dict()
    assert json.loads((bundle / "export.json").read_text())["decision"] == rule.to_dict()
    assert "## Decision threshold" in (bundle / "README.md").read_text()
    assert [row["label"] for row in run_predict_script(bundle, *images)] == expected

    assert clear_threshold(store, run_id)["decision"] is None
    assert run_rule(store, run_id) is None and not (run_dir / DECISION_FILE).exists()
    assert [row["label"] for row in predict_run(store, run_id, images)] == [built.classes[i] for i in probs.argmax(1)]


def test_the_rarer_class_is_the_one_to_find_unless_told(parts_run):
    store, run_id = parts_run
    assert validation_scores(store, run_id).positive == "defect"
    assert validation_scores(store, run_id, "ok").positive == "ok"
    summary = decision_summary(store, run_id)
    assert summary["decision"] is None and summary["validation"] == summary["validation_at_0.5"]
    assert 0 < summary["average_precision"] <= 1


def test_a_damaged_decision_file_is_named_with_its_fix(parts_run, parts_folder):
    store, run_id = parts_run
    path = store.run_dir(run_id) / DECISION_FILE
    path.write_text("{not json")
    try:
        with pytest.raises(RunError, match="--clear"):
            predict_run(store, run_id, [str(next(parts_folder.glob("ok/*.png")))])
    finally:
        path.unlink()


def test_more_epochs_drop_a_threshold_chosen_for_the_old_weights(parts_folder, store):
    first = fit(image_config(parts_folder, train__epochs=1, data__val_fraction=0.3), store=store)
    set_threshold(store, first.run_id, threshold=0.3)
    seen: list[str] = []
    again = fit(None, store=store, run_id=first.run_id, resume=True, extra_epochs=1,
                observers=[lambda e: seen.append(getattr(e, "message", ""))])
    assert again.status == RunStatus.COMPLETED
    assert run_rule(store, first.run_id) is None
    assert any("decision threshold" in m for m in seen)


def test_the_threshold_command(parts_run, parts_folder):
    store, run_id = parts_run
    runs = store.root
    shown = json.loads(cli("threshold", "--run", run_id, runs_dir=runs).stdout.splitlines()[-1])
    assert shown["positive"] == "defect" and shown["decision"] is None
    chosen = json.loads(cli("threshold", "--run", run_id, "--threshold", 0.25, runs_dir=runs).stdout.splitlines()[-1])
    assert chosen["decision"] == {"positive": "defect", "threshold": 0.25}
    image = sorted(parts_folder.glob("ok/*.png"))[0]
    predicted = json.loads(cli("predict", "--run", run_id, "--top-k", 1, image, runs_dir=runs).stdout)
    assert predicted["label"] in CLASSES
    refused = cli("threshold", "--run", run_id, "--threshold", 1.5, runs_dir=runs, check=False)
    assert refused.returncode != 0 and "between 0 and 1" in refused.stderr
    assert "\n" not in refused.stderr.strip()
    assert cli("threshold", "--run", run_id, "--clear", runs_dir=runs).returncode == 0
    assert run_rule(store, run_id) is None


def test_a_threshold_is_refused_while_the_run_trains_and_before_anything_is_saved(parts_run, parts_folder, store,
                                                                                  tmp_path):
    store_, run_id = parts_run
    record = store_.get_run(run_id)
    store_.set_status(run_id, RunStatus.RUNNING)
    try:
        with pytest.raises(RunError, match="once it has finished"):
            set_threshold(store_, run_id, threshold=0.3)
    finally:
        store_.set_status(run_id, record.status)
    # A run whose validation data holds one class: refused, and no decision.json appears.
    only_ok = tmp_path / "val" / "ok"
    only_ok.mkdir(parents=True)
    for image in sorted((parts_folder / "ok").glob("*.png"))[:8]:
        (only_ok / image.name).write_bytes(image.read_bytes())
    one = fit(image_config(parts_folder, train__epochs=1, data__val_path=str(only_ok.parent)), store=store)
    assert one.status == RunStatus.COMPLETED, one.message
    with pytest.raises(RunError, match="both classes"):
        set_threshold(store, one.run_id, positive="defect", threshold=0.3)
    assert not (store.run_dir(one.run_id) / DECISION_FILE).exists()


def test_thresholds_of_0_and_1_are_operating_points_too():
    probs = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    assert list(DecisionRule("defect", 0.0).predict(probs, CLASSES)) == [0, 0]     # always 'defect'
    assert list(DecisionRule("defect", 1.0).predict(probs, CLASSES)) == [1, 0]     # only when certain
