"""Predict with this exported model bundle.

Needs only torch + torchvision + Pillow (TorchScript models), onnxruntime +
torchvision + Pillow (ONNX), or transformers (Hugging Face models).

Command line (run from anywhere):
    python predict.py photo1.jpg photo2.png        # image models
    python predict.py "some text" "another text"   # text models
    python predict.py --top-k 1 --json photo.jpg    # one JSON object per input

Python:
    import predict                                  # with this folder on sys.path
    predict.predict(["photo.jpg"])                  # [{label: prob, ...}] highest first
    predict.predict(["photo.jpg"], top_k=3)         # [[(label, prob), ...]]
    model = predict.load()                          # reuse one loaded model
    model.predict_proba(["photo.jpg"])              # numpy array (N, num_classes)
    model.labels(["photo.jpg"])                     # the decided label per input

A two-class model may carry a decision threshold (decision.json): it then says the class to find once
that class's probability reaches the threshold, not only above 0.5. `labels` and the `label` of the
command line's output apply it; the probabilities are the model's own.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 32
_LOADED: dict = {}


def _read_json(bundle_dir: Path, name: str):
    return json.loads((bundle_dir / name).read_text(encoding="utf-8"))


# ------------------------------------------------------------- images
# The same decoding and eval transform the model was trained with.

def load_image(item):
    """A path, PIL image or binary file as 8-bit RGB: first frame, EXIF rotation applied,
    transparency composited on white, 16-bit greys scaled down."""
    from PIL import Image, ImageOps

    if isinstance(item, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(item))
    try:
        im = Image.open(item)
    except (OSError, ValueError) as e:
        raise ValueError(f"{item} is not a readable image ({type(e).__name__}); give JPEG or PNG files.") from None
    with im:
        if getattr(im, "is_animated", False):
            im.seek(0)
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # a malformed EXIF block should not cost the image
            pass
        return _to_rgb(im)


def _to_rgb(im):
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im), mode)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _to_uint8(a, mode):
    a = a.astype(np.float64)
    if mode.startswith("I;16"):
        scale = 65535.0
    elif mode == "F":
        hi = float(np.nanmax(a)) if a.size else 1.0
        scale = 1.0 if hi <= 1.0 else (255.0 if hi <= 255.0 else hi)
    else:
        hi = float(a.max()) if a.size else 0.0
        scale = 255.0 if hi <= 255 else (65535.0 if hi <= 65535 else hi)
    a = np.nan_to_num(a / scale, nan=0.0)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def image_transform(pre: dict):
    """Resize the shorter side to image_size, center-crop a square, scale to [0, 1], normalize."""
    import torch
    from torchvision.transforms import v2 as T

    size = pre["image_size"]
    return T.Compose([T.Resize(size, antialias=True), T.CenterCrop(size), T.ToImage(),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(list(pre["mean"]), list(pre["std"]))])


# ------------------------------------------------------------- model

def read_decision(bundle_dir) -> dict | None:
    """decision.json: {"positive": class, "threshold": probability}, or None when the bundle has none."""
    path = Path(bundle_dir) / "decision.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def decide(probs: np.ndarray, classes: list, decision: dict | None = None) -> list:
    """The label per row of probabilities: the most probable class, or with a decision rule the class to find
    when its probability is at least the threshold (else the other class)."""
    if decision is None:
        return [classes[int(i)] for i in np.asarray(probs).argmax(axis=1)]
    pos = classes.index(decision["positive"])
    return [classes[pos] if row[pos] >= decision["threshold"] else classes[1 - pos] for row in probs]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Model:
    """One loaded bundle. `backend`: "auto" (hf_model/ if present, else TorchScript), "torchscript", "onnx" or "hf"."""

    def __init__(self, bundle_dir=None, backend: str = "auto", device: str = "cpu"):
        self.dir = Path(bundle_dir or HERE).resolve()
        self.classes = _read_json(self.dir, "labels.json")
        self.preprocessing = _read_json(self.dir, "preprocessing.json")
        self.kind = self.preprocessing["kind"]
        self.decision = read_decision(self.dir)
        self.device = device
        if backend == "auto":
            backend = "hf" if (self.dir / "hf_model").is_dir() else "torchscript"
        self.backend = backend
        self._run = getattr(self, "_load_" + backend)()

    # Each loader returns a function: list of inputs -> logits as a numpy array.
    def _load_torchscript(self):
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit deprecation notice; TorchScript loads fine
            net = torch.jit.load(str(self.dir / "model.torchscript.pt"), map_location=self.device).eval()
        transform = image_transform(self.preprocessing)

        def run(items):
            x = torch.stack([transform(load_image(i)) for i in items]).to(self.device)
            with torch.inference_mode():
                return net(x).float().cpu().numpy()
        return run

    def _load_onnx(self):
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")   # no usage reports to Microsoft's servers
        import onnxruntime as ort
        import torch

        session = ort.InferenceSession(str(self.dir / "model.onnx"), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        transform = image_transform(self.preprocessing)

        def run(items):
            x = torch.stack([transform(load_image(i)) for i in items]).numpy()
            return session.run(None, {name: x})[0]
        return run

    def _load_hf(self):
        import inspect

        import torch
        import transformers

        folder = str(self.dir / "hf_model")
        if self.kind == "text":
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
            net = _from_pretrained(transformers.AutoModelForSequenceClassification, folder).to(self.device).eval()
            accepted = set(inspect.signature(net.forward).parameters)
            max_length = self.preprocessing["max_length"]
            mean_pooling = self.preprocessing.get("pooling") == "mean"

            def run(items):
                batch = tokenizer(list(items), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
                # The tokenizer may give inputs this model does not take (e.g. token_type_ids).
                batch = {k: v.to(self.device) for k, v in batch.items() if k in accepted}
                with torch.inference_mode(), _first_token_is_mean(net, batch.get("attention_mask"), mean_pooling):
                    return net(**batch).logits.float().cpu().numpy()
            return run
        net = _from_pretrained(transformers.AutoModelForImageClassification, folder).to(self.device).eval()
        transform = image_transform(self.preprocessing)
        # Trained at another resolution than the checkpoint's: position embeddings are interpolated.
        extra = {"interpolate_pos_encoding": True} if self.preprocessing.get("interpolate_pos_encoding") else {}

        def run(items):
            x = torch.stack([transform(load_image(i)) for i in items]).to(self.device)
            with torch.inference_mode():
                return net(pixel_values=x, **extra).logits.float().cpu().numpy()
        return run

    def predict_proba(self, inputs) -> np.ndarray:
        """Probabilities (N, num_classes); columns follow `self.classes`."""
        items = _as_list(inputs)
        if self.kind == "text" and not all(isinstance(t, str) for t in items):
            raise TypeError("This is a text model: give it strings.")
        out = [_softmax(self._run(items[i:i + BATCH_SIZE])) for i in range(0, len(items), BATCH_SIZE)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def labels(self, inputs) -> list:
        """The decided label per input (with decision.json's threshold, when the bundle has one)."""
        return decide(self.predict_proba(inputs), self.classes, self.decision)

    def predict(self, inputs, top_k: int | None = None):
        """Without top_k: one {label: prob} dict per input, highest first.
        With top_k: one list of the top_k (label, prob) pairs per input."""
        return [self.ranked(row, top_k) for row in self.predict_proba(inputs)]

    def ranked(self, row, top_k: int | None = None):
        ranked = sorted(zip(self.classes, (float(p) for p in row)), key=lambda lp: -lp[1])
        return dict(ranked) if top_k is None else ranked[:top_k]


def _from_pretrained(auto_class, folder: str):
    """auto_class.from_pretrained(folder), with a head that has a hidden layer put back: the config's
    "transfer_hidden_head" names the classifiers that are Linear, ReLU, Linear (dropout acts only in
    training), where transformers builds one Linear and would leave it randomly initialised."""
    from collections import OrderedDict

    import transformers
    from safetensors import safe_open
    from torch import nn

    config = transformers.AutoConfig.from_pretrained(folder)
    hidden = getattr(config, "transfer_hidden_head", None)
    if not hidden:
        return auto_class.from_pretrained(folder, config=config)
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()   # its report of the head's keys, which are loaded below
    try:
        net = auto_class.from_pretrained(folder, config=config)
    finally:
        transformers.logging.set_verbosity(level)
    paths = hidden["paths"]
    tensors = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys() if any(k.startswith(p + ".") for p in paths)})
    for path in paths:
        old = net.get_submodule(path)
        head = nn.Sequential(OrderedDict(hidden=nn.Linear(old.in_features, hidden["units"]), relu=nn.ReLU(),
                                         output=nn.Linear(hidden["units"], old.out_features)))
        head.load_state_dict({k[len(path) + 1:]: v for k, v in tensors.items() if k.startswith(path + ".")})
        parent, _, name = path.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, name, head.to(old.weight.dtype))
    return net


@contextlib.contextmanager
def _first_token_is_mean(net, attention_mask, on: bool):
    """With "pooling": "mean" the model was trained on the average of its token states (as
    sentence-transformers models are), but a Hugging Face classifier's head reads the first token:
    while the model runs, the encoder's output has its first token replaced by that average."""
    if not on:
        yield
        return
    import torch

    base = getattr(net, net.base_model_prefix)
    encoder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    if encoder is None:
        raise RuntimeError("mean pooling needs the model's encoder, and this model has none under a known name")

    def replace_first_token(module, args, output):
        hidden = output[0]
        mask = (torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None
                else attention_mask).unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        pooled = torch.cat([mean, hidden[:, 1:]], dim=1)
        if isinstance(output, tuple):
            return (pooled,) + tuple(output[1:])
        output[next(iter(output.keys()))] = pooled      # a transformers ModelOutput: its first field
        return output

    handle = encoder.register_forward_hook(replace_first_token)
    try:
        yield
    finally:
        handle.remove()


def _as_list(inputs) -> list:
    if isinstance(inputs, (str, Path)) or hasattr(inputs, "mode"):  # one path, text or PIL image
        return [inputs]
    return list(inputs)


def load(bundle_dir=None, backend: str = "auto", device: str = "cpu") -> Model:
    """Load the bundle (default: the folder holding this file); repeated calls reuse the model."""
    key = (str(Path(bundle_dir or HERE).resolve()), backend, device)
    if key not in _LOADED:
        _LOADED[key] = Model(bundle_dir, backend=backend, device=device)
    return _LOADED[key]


def predict(inputs, bundle_dir=None, top_k: int | None = None, backend: str = "auto"):
    return load(bundle_dir, backend=backend).predict(inputs, top_k=top_k)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Classify images or texts with this model bundle.")
    parser.add_argument("inputs", nargs="*", help="image files (image model) or texts (text model); none: read lines from stdin")
    parser.add_argument("--top-k", type=int, default=3, help="how many labels to show per input")
    parser.add_argument("--bundle", default=str(HERE), help="bundle folder (default: this file's folder)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torchscript", "onnx", "hf"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input")
    args = parser.parse_args(argv)
    inputs = args.inputs or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    model = load(args.bundle, backend=args.backend, device=args.device)
    try:
        probs = model.predict_proba(inputs)
    except (ValueError, TypeError, OSError) as e:
        print(f"predict.py: {e}", file=sys.stderr)
        return 2
    for item, row, label in zip(inputs, probs, decide(probs, model.classes, model.decision)):
        ranked = model.ranked(row, max(1, args.top_k))
        if args.json:
            print(json.dumps({"input": item, "label": label, "top": [[name, round(p, 6)] for name, p in ranked]}))
        else:
            shown = item if len(item) <= 60 else item[:57] + "..."
            said = f" -> {label}" if model.decision is not None else ""
            print(f"{shown}: " + ", ".join(f"{name} ({p:.3f})" for name, p in ranked) + said)
    return 0


if __name__ == "__main__":
    sys.exit(main())
