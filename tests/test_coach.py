"""The coach beside the curves (coach.py): each note on a history made to show it, no note on a healthy one, and
each on a real run of tiny_cnn made to show it (too high a rate, too low a rate, overfitting, a class it never
predicts)."""
from __future__ import annotations

import pytest
from test_trainer import image_config

from transfer_core.coach import coach_notes
from transfer_core.events import RunStatus
from transfer_core.runs import run_coach_notes
from transfer_core.trainer import fit


def history(train_loss, val_loss=None, val_accuracy=None, train_accuracy=None):
    n = len(train_loss)
    return [{"epoch": i, "train_loss": train_loss[i], "val_loss": (val_loss or [1.0] * n)[i],
             "val_accuracy": (val_accuracy or [0.5 + 0.05 * i for i in range(n)])[i],
             "train_accuracy": (train_accuracy or [0.9] * n)[i]} for i in range(n)]


def kinds(notes) -> list[str]:
    return [n.kind for n in notes]


def test_a_healthy_run_gets_no_note():
    rows = history([1.2, 0.8, 0.6, 0.5, 0.45], val_loss=[1.1, 0.8, 0.7, 0.65, 0.62])
    assert coach_notes(rows, 4, [[5, 0], [1, 4]], ["a", "b"]) == []


@pytest.mark.parametrize("rows, kind", [
    (history([1.2, 0.8, float("nan")]), "diverging"),
    (history([1.4, 0.9, 2.5]), "diverging"),
    (history([1.0, 0.6, 0.4, 0.3, 0.2], val_loss=[0.9, 0.6, 0.65, 0.7, 0.8]), "overfitting"),
    (history([1.0, 0.9, 0.85, 0.8, 0.78], val_accuracy=[0.6, 0.7, 0.69, 0.7, 0.68]), "stalled"),
    (history([1.39, 1.38, 1.38], train_accuracy=[0.25, 0.26, 0.3]), "near_chance"),
])
def test_each_note_on_a_history_made_to_show_it(rows, kind):
    notes = coach_notes(rows, 4)
    assert kind in kinds(notes)
    note = next(n for n in notes if n.kind == kind)
    assert note.message.endswith(".") and note.advice and "\n" not in note.message + note.advice


def test_a_class_never_predicted_is_named():
    notes = coach_notes(history([1.0, 0.5]), 3, [[4, 0, 0], [1, 3, 0], [2, 0, 0]], ["cat", "dog", "fox"])
    assert kinds(notes) == ["class_never_predicted"] and "'fox'" in notes[0].message


@pytest.mark.parametrize("settings, kind", [
    ({"optim__optimizer": "sgd", "optim__lr": 10.0, "optim__scheduler": "constant", "train__epochs": 4}, "diverging"),
    ({"optim__lr": 1e-7, "freeze__preset": "full", "train__epochs": 5}, "near_chance"),
    ({"optim__lr": 0.05, "freeze__preset": "full", "train__epochs": 15, "data__val_fraction": 0.5}, "overfitting"),
    ({"optim__lr": 1e-7, "freeze__preset": "full", "train__epochs": 5}, "class_never_predicted"),
])
def test_each_note_on_a_real_run_made_to_show_it(settings, kind, digits_folder, store):
    result = fit(image_config(digits_folder, **settings), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    assert kind in kinds(run_coach_notes(store, result.run_id))


def test_the_command_line_prints_the_coach_after_a_run(digits_folder, tmp_path):
    from test_cli import cli
    proc = cli("train", "--data", digits_folder, "--model", "tiny_cnn", "--image-size", 16, "--epochs", 5,
               "--batch-size", 8, "--freeze", "full", "--lr", "1e-7", "--set", "model.pretrained=false",
               runs_dir=tmp_path / "runs")
    assert "coach: After 5 epochs the training accuracy is" in proc.stderr and "What to try:" in proc.stderr
