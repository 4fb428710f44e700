"""The numbers of the model a run gives you (summary.py says what they mean), and how it used the machine."""
from __future__ import annotations

import torch

from ..devices import describe_device, precision_name
from ..freezing import count_trainable
from ..run_files import METRICS_FILE, PREDICTIONS_FILE, TEST_PREDICTIONS_FILE
from ..summary import best_fields, best_row


def final_metrics(loop) -> dict:
    """Evaluate the final weights on the validation (and test) split, save their predictions, and write
    metrics.json; returns the run's summary."""
    val = loop.evaluate("val", PREDICTIONS_FILE)
    # The numbers of the model the run gives you, and the best epoch over the whole history (an extension's
    # early stopping looks at its own epochs only, but the run's best is the best of all of them).
    metric, history = loop.config.train.early_stopping_metric, loop.state.history
    metrics = {"val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "val_loss": val["loss"],
               "epochs": len(history), "model_epoch": loop.state.model_epoch,
               **best_fields(best_row(history, metric), metric)}
    full: dict[str, object] = {"val": val}
    if loop.data.splits.test is not None and len(loop.data.splits.test):
        test = loop.evaluate("test", TEST_PREDICTIONS_FILE)
        metrics.update(test_accuracy=test["accuracy"], test_macro_f1=test["macro_f1"], test_loss=test["loss"])
        full["test"] = test
    metrics.update(loop.extra_metrics)   # components' own numbers (target_accuracy of domain adaptation)
    trainable, total = count_trainable(loop.built)   # (in the run's last stage)
    full.update(summary=metrics, history=history, hardware=hardware(loop),
                parameters={"trainable": trainable, "total": total})
    loop.output.write_json(METRICS_FILE, full)
    return metrics


def hardware(loop) -> dict:
    """How the run used the machine: what a user compares runs by, and the speed benchmarks read."""
    info = {"device": describe_device(loop.device), "precision": precision_name(loop.amp),
            "channels_last": loop.channels_last, "compiled": bool(loop.forward and loop.forward.active) and loop.world.size == 1,   # (DDP runs it plain)
            "batch_size": min(loop.state.batch_size, len(loop.data.splits.train)),   # what a step took
            "train_seconds": round(loop.state.train_seconds, 2), "processes": loop.world.size}
    if loop.device.type == "cuda":
        info["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(loop.device) / 2**20, 1)
    return info
