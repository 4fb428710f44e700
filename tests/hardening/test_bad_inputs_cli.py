"""Bad data and bad settings through `python -m transfer_core train`, as a user runs it.

Starting Python with torch costs ~5-20 s on a busy machine, so ONE subprocess runs every case in
turn (the CLI's own `main`, with file descriptors 1 and 2 redirected to per-case files: what each
case printed is exactly what a user would see) and each case is then checked by its own named test:
- refused data or settings: non-zero exit, exactly one line on stderr, no traceback;
- bad settings and unusable models: refused before a run exists (no runs directory at all);
- usable data with a bad item: the run completes and its data report names the skipped item;
- nothing is written outside the case's data, runs and cache folders (nor in the working folder).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from badinputs import ALL_CASES, UNICODE_CLASSES
from datafiles import files_under, image_tree

DRIVER = textwrap.dedent('''
    import json, os, sys, time, traceback
    # No network, whatever this machine has: the probe the pre-flight check uses always fails.
    # (HF_HUB_OFFLINE=1 and empty hub/torch caches are set by the test for the same reason.)
    import transfer_core.models.network as network
    network.reachable = lambda *args, **kwargs: False
    from transfer_core.cli import main
    results, seconds = {}, {}
    for case in json.load(open(sys.argv[1])):
        start = time.monotonic()
        os.environ["TRANSFER_CORE_CACHE"] = case["cache"]
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(case["out"], "w") as out, open(case["err"], "w") as err:
            os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
            try:
                code = main(case["argv"])
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                traceback.print_exc()
                code = "crashed"
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
        results[case["id"]] = code
        seconds[case["id"]] = round(time.monotonic() - start, 2)
    print(json.dumps(seconds))
    print(json.dumps(results))
''')

TRAIN_ARGS = {"image": ["--model", "tiny_cnn", "--image-size", "16"], "text": ["--model", "tiny_bert", "--max-length", "16"]}
COMMON = ["--epochs", "1", "--batch-size", "8", "--set", "model.pretrained=false", "--quiet"]

# (id, data kind, extra arguments, fragment naming the field): each must be refused before a run exists.
SETTINGS_CASES = [
    ("unknown_model", "image", ["--model", "no_such_net"], "no_such_net"),
    ("online_only_torchvision_model_offline", "image", ["--model", "resnet50", "--set", "model.pretrained=true"], "model.name resnet50"),
    ("online_only_hub_model_offline", "text", ["--model", "bert-base-uncased"], "model.name bert-base-uncased"),
    ("wrong_modality_model", "image", ["--model", "tiny_bert"], "model.name tiny_bert"),
    ("negative_learning_rate", "image", ["--lr", "-0.01"], "optim.lr"),
    ("batch_size_0", "image", ["--batch-size", "0"], "train.batch_size"),
    ("100000_epochs", "image", ["--epochs", "100000"], "train.epochs"),
    ("image_size_0", "image", ["--image-size", "0"], "model.image_size"),
    ("nan_learning_rate", "image", ["--lr", "nan"], "optim.lr is nan"),
    ("nan_weight_decay", "image", ["--set", "optim.weight_decay=nan"], "optim.weight_decay is nan"),
]


def _good_text(root: Path) -> Path:
    root.mkdir(parents=True)
    path = root / "topics.csv"
    path.write_text("text,label\n" + "".join(f"{w} {i},{w}\n" for w in ("sport", "tech") for i in range(6)))
    return path


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cases, snapshots = [], {}
    for case in ALL_CASES:
        data = case.build(root / case.id / "data")
        snapshots[case.id] = files_under(root / case.id / "data")
        cases.append((case.id, ["train", "--data", str(data), *COMMON, *TRAIN_ARGS[case.modality]]))
    for name, kind, extra, _ in SETTINGS_CASES:
        folder = root / name / "data"
        data = image_tree(folder / "pets", {"cat": 3, "dog": 3}) if kind == "image" else _good_text(folder)
        snapshots[name] = files_under(folder)
        cases.append((name, ["train", "--data", str(data), *TRAIN_ARGS[kind], *COMMON, *extra]))
    spec = [{"id": name, "argv": ["--runs-dir", str(root / name / "runs"), *argv], "cache": str(root / name / "cache"),
             "out": str(root / name / "stdout.txt"), "err": str(root / name / "stderr.txt")} for name, argv in cases]
    (root / "cases.json").write_text(json.dumps(spec))
    cwd = root / "cwd"
    cwd.mkdir()
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_CACHE": str(root / "empty-hf"), "TORCH_HOME": str(root / "empty-torch"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(root / "cases.json")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seconds, codes = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    print("seconds per case:", sorted(seconds.items(), key=lambda kv: -kv[1])[:8])
    assert not list(cwd.iterdir()), "the CLI wrote into the working folder"
    return root, codes, snapshots


def _case_output(cli_results, name: str):
    root, codes, snapshots = cli_results
    folder = root / name
    err = (folder / "stderr.txt").read_text()
    out = (folder / "stdout.txt").read_text()
    assert {p.name for p in folder.iterdir()} <= {"data", "runs", "cache", "stdout.txt", "stderr.txt"}
    assert files_under(folder / "data") == snapshots[name], "the data folder was changed"
    return codes[name], out, err, folder


def _one_error_line(code, err: str, fragment: str) -> str:
    assert code not in (0, "crashed"), err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_cli_train_on_bad_data(case, cli_results):
    code, out, err, folder = _case_output(cli_results, case.id)
    if case.error:
        _one_error_line(code, err, case.error)
        return
    assert code == 0 and "Traceback" not in err, err
    assert not [line for line in err.splitlines() if line.strip()], err   # --quiet: nothing on stderr
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed", summary
    run = folder / "runs" / summary["run_id"]
    report = json.loads((run / "data_report.json").read_text(encoding="utf-8"))
    labels = json.loads((run / "labels.json").read_text(encoding="utf-8"))
    if case.notice == "unreadable files were skipped":
        assert len(report["unreadable"]) == 1 and any(f["code"] == "unreadable" for f in report["findings"])
    if case.id == "labels_with_spaces_and_non_latin":
        assert sorted(labels if isinstance(labels, list) else labels["classes"]) == sorted(UNICODE_CLASSES)


@pytest.mark.parametrize("name, fragment", [(c[0], c[3]) for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES])
def test_cli_refuses_bad_setting_before_a_run_exists(name, fragment, cli_results):
    code, out, err, folder = _case_output(cli_results, name)
    assert code == 2
    _one_error_line(code, err, fragment)
    assert not (folder / "runs").exists(), "a run (or the runs folder) was created for a refused setting"
