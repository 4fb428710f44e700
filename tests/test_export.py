"""Export bundles: formats, parity with the engine, standalone predict.py, no pickles, zip (tiny models, CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from transfer_core.errors import RunError
from transfer_core.evaluate import predict_inputs
from transfer_core.export import compare_probs, export_bundle, load_bundle, zip_bundle
from transfer_core.models import build_model
from transfer_core.models.base import BuiltModel, ImagePreprocess, ModelSpec

IMAGE_CLASSES = ["cat", "dog", "bird"]
TEXT_CLASSES = ["sport", "tech", "food"]
TEXTS = ["the team won the match", "a new phone chip", "bake the bread with cheese",
         " ".join(["goal"] * 80)]   # longer than max_length: truncation must match


def write_images(folder: Path) -> list[str]:
    """Real image files of odd sizes and modes (RGB, RGBA, greyscale, JPEG)."""
    rng = np.random.default_rng(0)
    specs = [("a.png", (40, 28), "RGB"), ("b.png", (25, 50), "RGBA"), ("c.png", (33, 33), "L"), ("d.jpg", (60, 45), "RGB")]
    paths = []
    for name, (w, h), mode in specs:
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
        path = folder / name
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
        paths.append(str(path))
    return paths


def tiny_image_model() -> BuiltModel:
    torch.manual_seed(0)
    built = build_model("tiny_cnn", IMAGE_CLASSES, pretrained=False, image_size=16)
    with torch.no_grad():   # spread the random logits so top labels are clear-cut
        for p in built.net.parameters():
            p.mul_(3)
    return built


def tiny_text_model() -> BuiltModel:
    torch.manual_seed(0)
    built = build_model("tiny_bert", TEXT_CLASSES, pretrained=False, max_length=16)
    with torch.no_grad():
        for p in built.hf_model.classifier.parameters():
            p.mul_(30)
    return built


def assert_no_pickles(bundle: Path) -> None:
    for path in bundle.rglob("*"):
        if not path.is_file():
            continue
        assert path.suffix not in {".pkl", ".pickle", ".bin", ".pth", ".ckpt"}, path
        assert not path.read_bytes()[:2].startswith(b"\x80"), f"{path} is a raw pickle"
        if zipfile.is_zipfile(path):
            names = zipfile.ZipFile(path).namelist()
            # torch.save archives hold data.pkl only; TorchScript archives also hold the code/ of the graph.
            assert any("/code/" in n for n in names), f"{path} is a torch.save pickle archive"


def run_predict_script(bundle: Path, *args: str) -> list[dict]:
    # Run from the bundle with a clean environment: transfer_core must not be importable or needed.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "predict.py", "--json", *args], cwd=bundle, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


# ---------------------------------------------------------------- image (TorchScript + ONNX)

@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("image_export")
    images = write_images(root)
    built = tiny_image_model()
    run_info = {"config": {"model": {"name": "tiny_cnn"}}, "metrics": {"val_accuracy": 0.75}}
    result = export_bundle(built, root / "bundle", run_info=run_info, verify_inputs=images)
    return built, result, images


def test_image_bundle_formats_and_parity(image_export):
    built, result, _ = image_export
    assert result.formats == ["torchscript", "onnx"], result.skipped
    for fmt, tol in (("torchscript", 1e-4), ("onnx", 1e-3)):
        assert result.parity[fmt]["argmax_match"] and result.parity[fmt]["max_abs_diff"] < tol
    assert result.parity["num_inputs"] == 4 and result.parity["inputs"] == "given"
    bundle = result.path
    assert set(result.files) >= {"labels.json", "preprocessing.json", "run.json", "export.json", "README.md",
                                 "predict.py", "model.torchscript.pt", "model.onnx"}
    assert json.loads((bundle / "labels.json").read_text()) == IMAGE_CLASSES
    pre = json.loads((bundle / "preprocessing.json").read_text())
    assert pre["image_size"] == 16 and pre["resize"]["shorter_side"] == 16 and pre["mean"] == list(built.preprocess.mean)
    assert json.loads((bundle / "run.json").read_text())["metrics"]["val_accuracy"] == 0.75
    manifest = json.loads((bundle / "export.json").read_text())
    assert manifest["parity"]["onnx"]["max_abs_diff"] == result.parity["onnx"]["max_abs_diff"]
    readme = (bundle / "README.md").read_text()
    assert all(f"`{c}`" in readme for c in IMAGE_CLASSES) and "predict.py" in readme
    assert "transfer_core" not in (bundle / "predict.py").read_text()
    assert_no_pickles(bundle)


def test_image_bundle_predict_matches_engine(image_export):
    built, result, images = image_export
    engine = predict_inputs(built, images)
    module = load_bundle(result.path)
    for backend in ("torchscript", "onnx"):
        probs = module.load(backend=backend).predict_proba(images)
        np.testing.assert_allclose(probs, engine, atol=1e-4 if backend == "torchscript" else 1e-3)
    top = module.predict(images, top_k=2)
    assert [t[0][0] for t in top] == [IMAGE_CLASSES[i] for i in engine.argmax(axis=1)]
    assert len(top[0]) == 2
    full = module.predict(images[:1])[0]
    assert set(full) == set(IMAGE_CLASSES) and sum(full.values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_script_runs_standalone(image_export):
    built, result, images = image_export
    engine = predict_inputs(built, images)
    lines = run_predict_script(result.path, *images)
    assert [line["label"] for line in lines] == [IMAGE_CLASSES[i] for i in engine.argmax(axis=1)]
    assert lines[0]["top"][0][1] == pytest.approx(float(engine[0].max()), abs=1e-4)


def test_zip_bundle(image_export):
    _, result, _ = image_export
    archive = zip_bundle(result.path)
    assert archive == result.path.with_name("bundle.zip")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        assert names == {f"bundle/{f}" for f in result.files}
        assert json.loads(zf.read("bundle/labels.json")) == IMAGE_CLASSES


def test_reexport_replaces_bundle_and_synthesizes_inputs(tmp_path):
    built = tiny_image_model()
    target = tmp_path / "bundle"
    export_bundle(built, target)
    (target / "stale.txt").write_text("from an older export")
    result = export_bundle(built, target)
    assert result.parity["inputs"] == "synthetic" and result.parity["num_inputs"] >= 3
    assert not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]   # no leftover work folders


def test_export_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="choose a new or empty folder"):
        export_bundle(tiny_image_model(), tmp_path)


class BranchyNet(nn.Module):
    """Python control flow on the data: tracing keeps one branch, so the export must be caught."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, pixel_values):
        logits = self.fc(pixel_values.mean(dim=(2, 3)))
        return -logits if bool(pixel_values.mean() > 5) else logits


def test_parity_failure_raises_and_writes_nothing(tmp_path):
    spec = ModelSpec("branchy", "image", "test", "test model", True)
    built = BuiltModel(spec, BranchyNet(), [], ["a", "b"], ImagePreprocess(8, (0.0, 0.0, 0.0), (0.01, 0.01, 0.01)))
    white = tmp_path / "white.png"
    Image.new("RGB", (8, 8), (255, 255, 255)).save(white)
    with pytest.raises(RunError, match="Export check failed"):
        export_bundle(built, tmp_path / "bundle", verify_inputs=[str(white)])
    assert [p.name for p in tmp_path.iterdir()] == ["white.png"]


def test_compare_probs_forgives_only_ties():
    ref = np.array([[0.5, 0.5], [0.9, 0.1]], dtype=np.float32)
    tied = np.array([[0.50001, 0.49999], [0.9, 0.1]], dtype=np.float32)
    assert compare_probs(ref, tied, 1e-4)["passed"]
    flipped = np.array([[0.5, 0.5], [0.1, 0.9]], dtype=np.float32)
    result = compare_probs(ref, flipped, 1e-4)
    assert not result["argmax_match"] and not result["passed"]


# ---------------------------------------------------------------- Hugging Face text

@pytest.fixture(scope="module")
def text_export(tmp_path_factory):
    built = tiny_text_model()
    result = export_bundle(built, tmp_path_factory.mktemp("text_export") / "bundle", verify_inputs=TEXTS)
    return built, result


def test_text_bundle_hf_folder_and_pipeline(text_export):
    from transformers import pipeline

    built, result = text_export
    assert result.formats == ["hf"] and result.parity["hf"]["max_abs_diff"] < 1e-4
    hf_dir = result.path / "hf_model"
    assert (hf_dir / "model.safetensors").is_file() and (hf_dir / "config.json").is_file()
    config = json.loads((hf_dir / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(3)] == TEXT_CLASSES
    classify = pipeline("text-classification", model=str(hf_dir), top_k=None)
    outputs = classify(TEXTS, truncation=True)
    engine = predict_inputs(built, TEXTS)
    for out, probs in zip(outputs, engine):
        assert {o["label"] for o in out} == set(TEXT_CLASSES)
        assert out[0]["label"] == TEXT_CLASSES[int(probs.argmax())]
        assert out[0]["score"] == pytest.approx(float(probs.max()), abs=1e-4)
    assert_no_pickles(result.path)


def test_text_bundle_predict_matches_engine(text_export):
    built, result = text_export
    engine = predict_inputs(built, TEXTS)
    module = load_bundle(result.path)
    np.testing.assert_allclose(module.load().predict_proba(TEXTS), engine, atol=1e-4)
    top = module.predict(TEXTS, top_k=1)
    assert [t[0][0] for t in top] == [TEXT_CLASSES[i] for i in engine.argmax(axis=1)]


# ---------------------------------------------------------------- Hugging Face image

def tiny_vit() -> BuiltModel:
    from transformers import ViTConfig, ViTForImageClassification

    class Logits(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).logits

    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=len(IMAGE_CLASSES))
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30)
    spec = ModelSpec("tiny_vit", "image", "test", "test model", True)
    return BuiltModel(spec, Logits(model), [], list(IMAGE_CLASSES), ImagePreprocess(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                      export_format="hf", hf_model=model)


def test_hf_image_bundle(tmp_path):
    from transformers import pipeline

    built = tiny_vit()
    images = write_images(tmp_path)
    result = export_bundle(built, tmp_path / "bundle", verify_inputs=images)
    assert result.formats == ["hf"] and result.parity["hf"]["max_abs_diff"] < 1e-4
    assert (result.path / "hf_model" / "preprocessor_config.json").is_file()
    engine = predict_inputs(built, images)
    classify = pipeline("image-classification", model=str(result.path / "hf_model"), top_k=len(IMAGE_CLASSES))
    outputs = classify(images)
    # The pipeline's processor follows the same resize/crop rule; allow resampling noise.
    assert all({o["label"] for o in out} == set(IMAGE_CLASSES) for out in outputs)
    assert [out[0]["label"] for out in outputs] == [IMAGE_CLASSES[i] for i in engine.argmax(axis=1)]
    assert_no_pickles(result.path)
