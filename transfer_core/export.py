"""Verified export bundles: a folder anyone can use without this project.

A bundle holds the model in portable formats (TorchScript + ONNX for plain
PyTorch image models, a `save_pretrained` folder for Hugging Face models), the
class names, the exact preprocessing, the run's settings and metrics, a README
and a standalone `predict.py`. Before the bundle is put in place, the exported
artefacts are loaded back and must reproduce the in-engine probabilities; the
numbers are kept in `export.json`. Nothing in a bundle is a Python pickle.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from .decision import DecisionRule, check_rule, predicted_classes
from .errors import RunError
from .evaluate import predict_inputs
from .models.base import BuiltModel, ImagePreprocess, TextPreprocess, logits_of
from .models.huggingface import HIDDEN_HEAD
from .run_files import DECISION_FILE
from .summary import best_note

TEMPLATE_DIR = Path(__file__).resolve().parent / "bundle_template"
TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
HF_DIR = "hf_model"

# Largest allowed probability difference between the engine and each exported copy.
TOLERANCE = {"torchscript": 1e-4, "onnx": 1e-3, "hf": 1e-4}
NAMES = {"torchscript": "TorchScript", "onnx": "ONNX", "hf": "Hugging Face"}


@dataclass
class ExportResult:
    path: Path
    formats: list[str]                  # "torchscript", "onnx", "hf"
    files: list[str]                    # relative to `path`
    parity: dict                        # per format: max_abs_diff, argmax_match, tolerance, ...
    skipped: dict[str, str] = field(default_factory=dict)   # format -> why it is not in the bundle
    notes: dict[str, str] = field(default_factory=dict)     # format -> how it was made (e.g. which ONNX exporter)


LEFTOVER_AGE_S = 3600   # a build folder without an owner's id (older versions) left this long is abandoned


def _remove_leftovers(out: Path) -> None:
    """Removes the build folders of exports to `out` that were killed before they finished."""
    from .liveness import pid_alive
    prefix = f".{out.name}."
    try:
        candidates = [p for p in out.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for path in candidates:
        if path.is_symlink() or not path.is_dir():
            continue
        owner = path.name[len(prefix):].split(".", 1)
        if len(owner) == 2 and owner[0].isdigit():
            abandoned = not pid_alive(int(owner[0]))
        else:
            try:
                abandoned = time.time() - path.stat().st_mtime > LEFTOVER_AGE_S
            except OSError:
                continue
        if abandoned:
            shutil.rmtree(path, ignore_errors=True)


def export_bundle(built: BuiltModel, out_dir: str | Path, *, run_info: dict | None = None,
                  verify_inputs: list | None = None, decision: DecisionRule | None = None) -> ExportResult:
    """Write a verified bundle to `out_dir` (replacing an earlier bundle there); raise RunError on failure.
    `decision`: a two-class run's decision threshold (decision.py), which the bundle's predict.py applies."""
    out = Path(out_dir)
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and move it in only once verified, so a failed
    # export never leaves a half-written or unverified bundle behind.
    _remove_leftovers(out)
    # The process id in the name tells a later export whether this folder's owner is still at work.
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=out.parent))
    try:
        with _cpu_eval(built.net), tempfile.TemporaryDirectory() as scratch:
            formats, skipped, notes = _write_model(built, work)
            _write_metadata(built, work, run_info or {}, decision)
            inputs = list(verify_inputs) if verify_inputs else synthetic_inputs(built, Path(scratch))
            parity = verify_bundle(built, work, formats, inputs, decision)
            parity["inputs"] = "given" if verify_inputs else "synthetic"
            (work / "README.md").write_text(_readme(built, formats, skipped, parity, run_info or {}, decision),
                                            encoding="utf-8")
            _write_json(work / "export.json", _manifest(built, formats, skipped, notes, parity, work, decision))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(path=out, formats=formats, files=_list_files(out), parity=parity, skipped=skipped, notes=notes)


def _check_target(out: Path) -> None:
    if out.is_file():
        raise RunError(f"Export folder {out} is a file; choose a folder path.")
    if out.is_dir() and any(out.iterdir()) and not (out / "export.json").is_file():
        raise RunError(f"Export folder {out} already holds other files; choose a new or empty folder.")


@contextlib.contextmanager
def _cpu_eval(net: nn.Module):
    """Export from CPU in eval mode (portable, deterministic), then restore the caller's device and mode."""
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = net.training
    net.to("cpu").eval()
    try:
        yield net
    finally:
        net.to(device)
        net.train(was_training)


# ---------------------------------------------------------------- model files

def _write_model(built: BuiltModel, folder: Path) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Write the model files; return (formats, skipped format -> why, format -> note)."""
    if built.export_format == "hf":
        _write_hf(built, folder / HF_DIR)
        return ["hf"], {}, {"hf": "save_pretrained with safetensors weights"}
    if isinstance(built.preprocess, TextPreprocess):
        raise RunError(f"Model {built.spec.name} is a text model without a Hugging Face form; only Hugging Face text models can be exported.")
    return _write_torch(built, folder)


class PixelsToLogits(nn.Module):
    """The network as a plain tensor -> tensor function, the form TorchScript and ONNX need."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return logits_of(self.net(pixel_values=pixel_values))


def _example_pixels(built: BuiltModel) -> torch.Tensor:
    assert isinstance(built.preprocess, ImagePreprocess)   # the torch export is for image models
    size = built.preprocess.image_size
    # Batch of 2 so no exporter mistakes the batch dimension for a constant 1.
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def _write_torch(built: BuiltModel, folder: Path) -> tuple[list[str], dict[str, str], dict[str, str]]:
    wrapper = PixelsToLogits(built.net).eval()
    example = _example_pixels(built)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.* deprecation notices; TorchScript still loads everywhere
        try:
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
            traced.save(str(folder / TORCHSCRIPT_FILE))
        except Exception as e:
            raise RunError(f"Model {built.spec.name} cannot be traced to TorchScript ({_short(e)}); this model cannot be exported.") from None
    formats, skipped, notes = ["torchscript"], {}, {"torchscript": "torch.jit.trace in eval mode"}
    written, note = _write_onnx(wrapper, example, folder / ONNX_FILE)
    if written:
        formats.append("onnx")
        notes["onnx"] = note
    else:
        skipped["onnx"] = note
    return formats, skipped, notes


def _write_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path) -> tuple[bool, str]:
    """Export ONNX with the default exporter, else the legacy one.

    Returns (written, note): which exporter made the file, or why none could.
    """
    common: dict[str, Any] = dict(input_names=["pixel_values"], output_names=["logits"],
                                  dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    attempts: list[tuple[str, dict[str, Any]]] = [("default exporter", dict(external_data=False)),
                                                  ("legacy exporter", dict(dynamo=False))]
    problems: list[str] = []
    for label, extra in attempts:
        path.unlink(missing_ok=True)
        try:
            # Not under no_grad: there, attention layers take a fused fast path ONNX cannot express.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, (example,), str(path), **common, **extra)
            if path.is_file() and not _onnx_side_files(path):
                return True, label + (f" (after {'; '.join(problems)})" if problems else "")
            problems.append(f"{label}: wrote no single-file model")
        except Exception as e:  # any exporter failure only costs the ONNX copy
            problems.append(f"{label}: {_short(e)}")
    path.unlink(missing_ok=True)
    for side in _onnx_side_files(path):
        side.unlink()
    return False, "; ".join(problems)


def _onnx_side_files(path: Path) -> list[Path]:
    """External-data files an exporter may write next to the model (we want one self-contained file)."""
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path]


def _write_hf(built: BuiltModel, folder: Path) -> None:
    model = built.hf_model
    if model is None or not hasattr(model, "save_pretrained"):
        raise RunError(f"Model {built.spec.name} says it exports as Hugging Face but has no Hugging Face model; report this as a bug.")
    classes = list(built.classes)
    # Label names in the config make pipelines and AutoModel users see class names, not LABEL_0.
    model.config.id2label = dict(enumerate(classes))
    model.config.label2id = {c: i for i, c in enumerate(classes)}
    with _quiet_transformers():
        model.save_pretrained(str(folder), safe_serialization=True)
        if isinstance(built.preprocess, TextPreprocess):
            _write_tokenizer(built.preprocess, folder)
        else:
            _write_image_processor(built.preprocess, folder)


def _write_tokenizer(pre: TextPreprocess, folder: Path) -> None:
    pre.tokenizer.save_pretrained(str(folder))
    # Pipelines truncate at model_max_length; make that the length the model was trained with.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config["model_max_length"] = pre.max_length
    _write_json(config_path, config)


def _write_image_processor(pre, folder: Path) -> None:
    """A processor config with the engine's rule: shorter side to size, center crop, rescale, normalize."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    size = pre.image_size
    CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=Image.Resampling.BILINEAR,
        do_center_crop=True, crop_size={"height": size, "width": size},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(pre.mean), image_std=list(pre.std), do_convert_rgb=True,
    ).save_pretrained(str(folder))


@contextlib.contextmanager
def _quiet_transformers():
    """No progress bars from save/load while exporting; restore the setting afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------- metadata

def preprocessing_info(built: BuiltModel) -> dict:
    """`preprocess.to_dict()` plus the rule spelled out for people reimplementing it."""
    info = built.preprocess.to_dict()
    if isinstance(built.preprocess, TextPreprocess):
        info.update(tokenizer_dir=HF_DIR, truncation=True, padding="longest in batch",
                    output="logits; softmax gives probabilities in labels.json order")
        return info
    size = built.preprocess.image_size
    info.update(
        color="RGB, 8 bit: first frame, EXIF rotation applied, transparency composited on white",
        resize={"shorter_side": size, "interpolation": "bilinear", "antialias": True},
        center_crop={"height": size, "width": size},
        scale="pixel / 255 to [0, 1]",
        normalize="(x - mean) / std per channel",
        layout="float32 NCHW",
        input_name="pixel_values",
        output="logits; softmax gives probabilities in labels.json order",
    )
    if getattr(built.net, "interpolate_pos_encoding", False):
        info["interpolate_pos_encoding"] = True   # trained at another size than the checkpoint's native one
    return info


def _write_metadata(built: BuiltModel, folder: Path, run_info: dict, decision: DecisionRule | None) -> None:
    _write_json(folder / "labels.json", list(built.classes))
    if decision is not None:
        _write_json(folder / DECISION_FILE, check_rule(decision, list(built.classes)).to_dict())
    _write_json(folder / "preprocessing.json", preprocessing_info(built))
    _write_json(folder / "run.json", run_info)
    shutil.copyfile(TEMPLATE_DIR / "predict.py", folder / "predict.py")


def _manifest(built: BuiltModel, formats: list[str], skipped: dict, notes: dict, parity: dict, folder: Path,
              decision: DecisionRule | None) -> dict:
    return {
        "model": built.spec.name,
        "modality": built.modality,
        **({"decision": decision.to_dict()} if decision else {}),
        # the layer group the head reads, when not the last (model.feature_layer; the groups above are not in the files)
        **({"feature_layer": built.feature_layer} if built.feature_layer else {}),
        "export_format": built.export_format,
        "formats": formats,
        "skipped": skipped,
        "notes": notes,
        "classes": list(built.classes),
        "parity": parity,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "files": sorted(_list_files(folder) + ["export.json"]),
    }


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "torchvision", "transformers", "onnx", "onnxruntime"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def _list_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _short(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return f"{type(e).__name__}: {line[:160]}"


# ---------------------------------------------------------------- verification

def synthetic_inputs(built: BuiltModel, folder: Path) -> list:
    """A few inputs exercising the preprocessing: odd image shapes and modes, short and over-long texts."""
    if isinstance(built.preprocess, TextPreprocess):
        long_text = " ".join(f"word{i}" for i in range(built.preprocess.max_length * 2))
        return ["A short example sentence.", "Another input, with punctuation & numbers 42!", "ok", long_text]
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = [((97, 61), "RGB"), ((40, 120), "RGB"), ((64, 64), "RGBA"), ((150, 90), "L")]
    paths = []
    for i, ((w, h), mode) in enumerate(shapes):
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
        path = folder / f"verify_{i}.png"
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
        paths.append(str(path))
    return paths


def _backends(formats: list[str]) -> list[str]:
    backends = [f for f in formats if f != "onnx"]
    if "onnx" in formats and importlib.util.find_spec("onnxruntime") is not None:
        backends.append("onnx")
    return backends


def verify_bundle(built: BuiltModel, bundle_dir: Path, formats: list[str], inputs: list,
                  decision: DecisionRule | None = None) -> dict:
    """Compare the engine's probabilities with each exported copy's (loaded via the bundle's predict.py), and the
    bundle's decisions with the engine's on the same probabilities."""
    reference = predict_inputs(built, inputs, device="cpu")
    module = load_bundle(bundle_dir)
    parity: dict = {"num_inputs": len(inputs)}
    if decision is not None:
        _check_decisions(module, built, decision, bundle_dir)
    for backend in _backends(formats):
        try:
            with _quiet_transformers(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probs = module.Model(bundle_dir, backend=backend).predict_proba(inputs)
        except Exception as e:
            raise RunError(f"Export check failed: the {NAMES[backend]} copy cannot be loaded back ({_short(e)}); this model cannot be exported in that format.") from None
        parity[backend] = compare_probs(reference, probs, TOLERANCE[backend])
        _raise_on_mismatch(backend, parity[backend])
    if "onnx" in formats and "onnx" not in parity:
        parity["onnx"] = {"verified": False, "reason": "onnxruntime is not installed"}
    return parity


def _check_decisions(module: ModuleType, built: BuiltModel, decision: DecisionRule, bundle_dir: Path) -> None:
    """predict.py's rule gives the engine's labels, on probabilities on both sides of the threshold."""
    classes = list(built.classes)
    pos = classes.index(decision.positive)
    p = np.clip(decision.threshold + np.array([-0.2, -1e-6, 0.0, 1e-6, 0.2]), 0.0, 1.0)
    probs = np.zeros((len(p), 2), dtype=np.float64)
    probs[:, pos], probs[:, 1 - pos] = p, 1 - p
    ours = [classes[i] for i in predicted_classes(probs, classes, decision)]
    theirs = module.decide(probs, classes, module.read_decision(bundle_dir))
    if ours != theirs:
        raise RunError(f"Export check failed: the bundle's predict.py applies the decision threshold differently "
                       f"({theirs} against {ours}); nothing was written, report this as a bug.")


def compare_probs(reference: np.ndarray, probs: np.ndarray, tolerance: float) -> dict:
    """Max abs difference and top-label agreement; a differing top label is forgiven only
    where the engine's own top two classes are tied to within the tolerance."""
    if probs.shape != reference.shape:
        return {"max_abs_diff": float("inf"), "argmax_match": False, "tolerance": tolerance, "passed": False,
                "shape": list(probs.shape)}
    diff = float(np.abs(reference.astype(np.float64) - probs).max()) if reference.size else 0.0
    ref_top, top = reference.argmax(axis=1), probs.argmax(axis=1)
    rows = np.arange(len(reference))
    real_mismatch = (ref_top != top) & (reference[rows, ref_top] - reference[rows, top] > tolerance)
    argmax_match = not bool(real_mismatch.any())
    return {"max_abs_diff": diff, "argmax_match": argmax_match, "tolerance": tolerance,
            "passed": argmax_match and diff < tolerance}


def _raise_on_mismatch(backend: str, result: dict) -> None:
    if not result["passed"]:
        raise RunError(f"Export check failed: the {NAMES[backend]} copy gives different probabilities "
                       f"(max difference {result['max_abs_diff']:.2g}, limit {result['tolerance']:g}, "
                       f"top labels {'agree' if result['argmax_match'] else 'differ'}); "
                       f"nothing was written, report this model as not exportable in that format.")


def load_bundle(bundle_dir: str | Path) -> ModuleType:
    """The bundle's own predict.py as a module (its `load`/`predict` default to that bundle)."""
    path = Path(bundle_dir) / "predict.py"
    if not path.is_file():
        raise RunError(f"{bundle_dir} is not an export bundle (no predict.py); export the run first.")
    # A name unique to the file, so two bundles loaded in one process never share a module.
    name = "bundle_predict_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None   # a .py file always has a spec and a loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def zip_bundle(bundle_dir: str | Path) -> Path:
    """Zip the bundle to <bundle_dir>.zip beside it; the archive unpacks to one folder."""
    folder = Path(bundle_dir)
    if not (folder / "labels.json").is_file():
        raise RunError(f"{folder} is not an export bundle (no labels.json); export the run first.")
    target = folder.with_name(folder.name + ".zip")
    partial = folder.with_name(folder.name + ".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in _list_files(folder):
            zf.write(folder / rel, f"{folder.name}/{rel}")
    os.replace(partial, target)
    return target


# ---------------------------------------------------------------- README

def _readme(built: BuiltModel, formats: list[str], skipped: dict, parity: dict, run_info: dict,
            decision: DecisionRule | None = None) -> str:
    classes = list(built.classes)
    text = isinstance(built.preprocess, TextPreprocess)
    parts = [
        f"# {built.spec.name} fine-tuned for {len(classes)} classes\n",
        (f"Its head reads the layer group `{built.feature_layer}`; the layers above it were removed and are not "
         "in these files.\n") if built.feature_layer else "",
        "Classes, in the order of the model's outputs (`labels.json`):\n",
        "\n".join(f"{i}. `{c}`" for i, c in enumerate(classes)) + "\n",
        _readme_quickstart(classes, text, formats),
        _readme_decision(classes, decision),
        _readme_raw(built, formats),
        _readme_files(formats, skipped, decision),
        _readme_run(run_info),
        _readme_parity(parity),
    ]
    return "\n".join(p for p in parts if p)


def _readme_decision(classes: list[str], decision: DecisionRule | None) -> str:
    if decision is None:
        return ""
    other = next(c for c in classes if c != decision.positive)
    why = (f", chosen on the validation data to find at least {decision.target_recall:.0%} of them"
           if decision.target_recall is not None else "")
    return ("## Decision threshold\n\n"
            f"This model says `{decision.positive}` when the probability of `{decision.positive}` is at least "
            f"{decision.threshold:.4g} (not 0.5){why}, and `{other}` otherwise (`decision.json`). "
            "`predict.py` applies it: the `label` of `--json` output and `model.labels(inputs)`; the probabilities are "
            "the model's own. Using the model files directly, apply it to the probabilities yourself.\n")


def _example_output(classes: list[str]) -> str:
    shown = classes[:3]
    probs = [0.9, 0.07, 0.03][:len(shown)]
    return "[[" + ", ".join(f"({c!r}, {p})" for c, p in zip(shown, probs)) + "]]"


def _readme_quickstart(classes: list[str], text: bool, formats: list[str]) -> str:
    example = '"This is the text to classify."' if text else '"photo.jpg"'
    cli = 'python predict.py "This is the text to classify."' if text else "python predict.py photo.jpg other.png"
    needs = "transformers torch" if "hf" in formats else "torch torchvision pillow"
    return f"""## Use it

Install `{needs}`, then from this folder:

```bash
{cli}
```

In Python (`predict.py` needs nothing from the training app):

```python
import sys
sys.path.insert(0, "path/to/this/folder")
import predict

print(predict.predict([{example}], top_k=3))
# e.g. {_example_output(classes)}
print(predict.predict([{example}]))        # all classes: [{{label: probability}}], highest first
```
"""


def _readme_raw(built: BuiltModel, formats: list[str]) -> str:
    if "hf" in formats:
        task = "text-classification" if isinstance(built.preprocess, TextPreprocess) else "image-classification"
        arg = '"This is the text to classify.", truncation=True' if task == "text-classification" else '"photo.jpg"'
        note = "" if task == "text-classification" else _pipeline_image_note(built)
        caveats = _pipeline_caveats(built, task)
        if caveats:
            return "## With Hugging Face transformers\n\n" + "\n".join(caveats)
        return f"""## With Hugging Face transformers

```python
from transformers import pipeline

classify = pipeline("{task}", model="path/to/this/folder/{HF_DIR}")
print(classify({arg}))   # labels are the class names above
```
{note}"""
    pre = built.preprocess
    assert isinstance(pre, ImagePreprocess)   # the other bundles are Hugging Face folders (above)
    onnx = ""
    if "onnx" in formats:
        onnx = f"""
With ONNX Runtime instead of torch (same preprocessing):

```python
import onnxruntime as ort
session = ort.InferenceSession("{ONNX_FILE}")
logits = session.run(None, {{"pixel_values": x.numpy()}})[0]
```
"""
    return f"""## Without predict.py

```python
import json, torch
from PIL import Image
from torchvision.transforms import v2 as T

classes = json.load(open("labels.json"))
net = torch.jit.load("{TORCHSCRIPT_FILE}").eval()
transform = T.Compose([
    T.Resize({pre.image_size}, antialias=True), T.CenterCrop({pre.image_size}),
    T.ToImage(), T.ToDtype(torch.float32, scale=True),
    T.Normalize({list(pre.mean)}, {list(pre.std)}),
])
# predict.load_image also applies EXIF rotation and puts transparency on white, as training did
x = transform(Image.open("photo.jpg").convert("RGB")).unsqueeze(0)
probs = net(x).softmax(-1)[0]
print(classes[int(probs.argmax())], float(probs.max()))
```
{onnx}"""


def _pipeline_caveats(built: BuiltModel, task: str) -> list[str]:
    """Why a plain transformers pipeline would answer differently from `predict.py`, one paragraph each."""
    out = []
    if getattr(built.preprocess, "pooling", None) == "mean":
        out.append(f"""This model classifies the **average of its token states** (mean pooling, as the sentence encoder
it starts from was trained), while a Hugging Face classifier's own head reads the first token: a
plain `pipeline("{task}", ...)` on `{HF_DIR}/` loads it but gives other answers. `predict.py`
does the pooling (see `_first_token_is_mean`); use it, or copy that function.
""")
    if getattr(built.hf_model.config, HIDDEN_HEAD, None):
        out.append(f"""This model's head has a **hidden layer** (`{HIDDEN_HEAD}` in `{HF_DIR}/config.json`), while
transformers builds a single Linear classifier there: a plain `pipeline("{task}", ...)` on `{HF_DIR}/`
loads it with that classifier left random. `predict.py` puts the trained head back (see
`_from_pretrained`); use it, or copy that function.
""")
    return out


def _pipeline_image_note(built: BuiltModel) -> str:
    if getattr(built.net, "interpolate_pos_encoding", False):
        return ("\nThis model was trained at another image size than its checkpoint's native one, which needs "
                "`interpolate_pos_encoding=True` in the forward call: use `predict.py`, the pipeline cannot pass it.\n")
    return ("\n`predict.py` reproduces the training preprocessing exactly; the pipeline's image processor "
            "follows the same rule but may differ in the last decimals.\n")


def _readme_files(formats: list[str], skipped: dict, decision: DecisionRule | None) -> str:
    rows = [("labels.json", "class names in output order"),
            *([(DECISION_FILE, "the decision threshold (see above)")] if decision else []),
            ("preprocessing.json", "the exact input preprocessing"),
            ("run.json", "training settings and metrics"),
            ("export.json", "formats, versions and the verification numbers"),
            ("predict.py", "standalone prediction script and module")]
    if "torchscript" in formats:
        rows.append((TORCHSCRIPT_FILE, "TorchScript model: pixels (N, 3, H, W) -> logits"))
    if "onnx" in formats:
        rows.append((ONNX_FILE, "ONNX model: input `pixel_values`, output `logits`"))
    if "hf" in formats:
        rows.append((f"{HF_DIR}/", "Hugging Face model folder (safetensors weights, config, tokenizer or image processor)"))
    lines = ["## Files\n", "| File | What |", "|---|---|"] + [f"| `{f}` | {w} |" for f, w in rows]
    lines += [f"\n{NAMES.get(fmt, fmt)} export was skipped: {why}" for fmt, why in skipped.items()]
    return "\n".join(lines) + "\n"


def _readme_run(run_info: dict) -> str:
    metrics = run_info.get("metrics") or {}
    # The exported model's own numbers; which epoch it is and the best epoch are said in words below.
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and not k.startswith("best_") and k != "model_epoch"}
    if not shown:
        return ""
    lines = ["## Training results\n", "The numbers of the model in this bundle, measured at the end of training (`val_`: the validation "
             "data; `test_`: the test set, where one was held out).\n",
             "| Metric | Value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in shown.items()]
    model_epoch, note = metrics.get("model_epoch"), best_note(metrics)
    if isinstance(model_epoch, int) and model_epoch >= 0:
        lines.append(f"\nThe model is the one at the end of epoch {model_epoch + 1}"
                     + (f" of {metrics['epochs']}." if isinstance(metrics.get("epochs"), int) else "."))
    if note:
        lines.append(f"\nNote: {note}.")
    return "\n".join(lines) + "\n\nFull settings are in `run.json`.\n"


def _readme_parity(parity: dict) -> str:
    lines = ["## Verification\n",
             f"Before this bundle was written, each exported copy was run on {parity.get('num_inputs', 0)} "
             f"{parity.get('inputs', '')} inputs and compared with the trained model:\n",
             "| Format | Max probability difference | Top labels agree |", "|---|---|---|"]
    for fmt in ("torchscript", "onnx", "hf"):
        r = parity.get(fmt)
        if isinstance(r, dict) and "max_abs_diff" in r:
            lines.append(f"| {NAMES[fmt]} | {r['max_abs_diff']:.1e} | {'yes' if r['argmax_match'] else 'no'} |")
        elif isinstance(r, dict):
            lines.append(f"| {NAMES[fmt]} | not checked ({r.get('reason', '')}) | |")
    return "\n".join(lines) + "\n"
