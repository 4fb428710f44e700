"""benchmarks/train_speed.py: the table logic, and one --quick smoke run (no timing assertions)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "train_speed.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(wall, acc, peak=100.0, n=200, epochs=10):
    return {"wall_s": wall, "samples_per_s": n * epochs / wall, "peak_mib": peak, "val_accuracy": acc,
            "num_train": n, "num_val": 50, "threads": 2}


def test_summary_ratios_medians_and_targets():
    ts = load_script()
    sc = ts.scenario_settings("text-head", quick=False)
    runs = {"engine": [fake_run(20, 0.96), fake_run(22, 0.96), fake_run(100, 0.96)],
            "loop": [fake_run(120, 0.96, peak=50), fake_run(110, 0.96, peak=50), fake_run(130, 0.96, peak=50)]}
    rows = ts.summarise("text-head", sc, runs)
    engine = next(r for r in rows if r["method"] == "engine")
    assert engine["wall_s"] == 22 and engine["wall_min"] == 20 and engine["wall_max"] == 100  # median, not mean
    assert engine["speedup"] == pytest.approx(120 / 22)
    assert engine["mem_ratio"] == pytest.approx(2.0)
    assert engine["acc_points"] == pytest.approx(0.0)
    table = ts.markdown_table(rows, repeats=3, quick=False)
    assert table.splitlines()[0].startswith("| scenario | method |")
    assert "| text-head | loop |" in table and "5.45x" in table
    (verdict,) = ts.target_lines(rows)
    assert "met" in verdict and "NOT" not in verdict


def test_overhead_target_and_failed_method_are_reported():
    ts = load_script()
    sc = ts.scenario_settings("image-full", quick=False)
    runs = {"engine": [fake_run(110, 0.5)], "loop": [fake_run(100, 0.5)]}
    rows = ts.summarise("image-full", sc, runs)
    (verdict,) = ts.target_lines(rows)
    assert "+10.0 %" in verdict and "NOT met" in verdict
    rows = ts.summarise("image-full", sc, {"engine": [{"error": "exit status 1: boom"}], "loop": [fake_run(100, 0.5)]})
    assert "failed: exit status 1: boom" in ts.markdown_table(rows, 1, False)


def test_quick_settings_shrink_every_scenario():
    ts = load_script()
    for name in ts.SCENARIOS:
        full, quick = ts.scenario_settings(name, False), ts.scenario_settings(name, True)
        assert quick["quick"] and not full["quick"]
        assert quick != full


@pytest.mark.slow
def test_quick_text_head_prints_table_with_sane_accuracies(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out_md = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--scenario", "text-head", "--quick", "--repeats", "1",
                           "--markdown", str(out_md)], capture_output=True, text=True, env=env, cwd=str(REPO), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("Machine: CPU ")
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| text-head |"):
            rows[cells[1].split(" ")[0]] = cells
    assert set(rows) == {"engine", "loop", "hf_trainer"}, proc.stdout
    for method in ("engine", "loop"):
        acc = float(rows[method][6])
        assert acc >= 0.6, f"{method} reached only {acc} on 5 BBC topics (chance 0.2)"
    assert 0.0 <= float(rows["hf_trainer"][6]) <= 1.0
    assert "feature cache: computed once" in rows["engine"][1]  # a fresh runs directory: nothing reused
    assert "| scenario | method |" in out_md.read_text()


def test_accuracy_verdict_allows_higher_but_not_lower():
    ts = load_script()
    sc = ts.scenario_settings("text-head", quick=False)
    for engine_acc, word, met in ((0.98, "higher than the loop's", True), (0.94, "LOWER than the loop's", False),
                                  (0.955, "equal", True)):
        rows = ts.summarise("text-head", sc, {"engine": [fake_run(20, engine_acc)], "loop": [fake_run(120, 0.96)]})
        (verdict,) = ts.target_lines(rows)
        assert word in verdict and verdict.endswith("met") and ("NOT met" not in verdict) == met


def test_gpu_engine_benchmark_runs_the_engine_and_tabulates_it(tmp_path):
    """The GPU benchmark's plumbing, on whatever device is here (the numbers only mean something on CUDA)."""
    import argparse
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_engine
    import torch
    from transfer_core import batching
    from transfer_core.store import RunStore
    args = argparse.Namespace(per_class=3, epochs=1, batch_size=8, repeats=1)
    store = RunStore(tmp_path / "runs")
    share, tf32 = batching.DEVICE_PIXELS_SHARE, torch.backends.cudnn.allow_tf32
    out = gpu_engine.one_run("tiny_cnn", "bf16-loader", args, store)
    store.close()
    assert (batching.DEVICE_PIXELS_SHARE, torch.backends.cudnn.allow_tf32) == (share, tf32)   # put back
    assert not out.get("error"), out
    assert out["num_train"] > 0 and out["last_epoch_s"] > 0 and out["first_step_s"] > 0 and out["step_s"] > 0
    assert out["hardware"]["precision"] in ("fp32", "bf16", "fp16") and out["hardware"]["batch_size"] == 8
    out["hardware"].setdefault("peak_gpu_memory_mib", 0.0)   # recorded on CUDA only
    table = gpu_engine.table([("tiny_cnn", {"fp32-strict": [out], "bf16": [out]})], args)
    assert "| tiny_cnn | bf16 |" in table and "1.00x" in table


def test_cpu_layout_benchmark_prints_a_row_per_model():
    """benchmarks/cpu_layout.py end to end on the tiny test CNN (plumbing only: no timing assertions)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "cpu_layout.py"), "--models", "tiny_cnn",
                          "--size", "16", "--batch", "2", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    row = [line for line in out.stdout.splitlines() if line.startswith("tiny_cnn")]
    assert len(row) == 1 and row[0].rstrip().endswith("yes") and row[0].count("x") >= 3, out.stdout


@pytest.mark.slow
def test_batchnorm_gap_script_prints_its_table():
    # A smoke run of benchmarks/batchnorm_gap.py at the smallest size (its numbers are in docs/batchnorm.md).
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "batchnorm_gap.py"), "--per-class", "4",
                          "--epochs", "1", "--image-size", "32"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "method" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["engine", "plain PyTorch loop", "plain loop + swa_utils.update_bn"]
