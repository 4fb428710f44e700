"""Which layer transfers best: a linear probe on every layer group's output.

The frozen pretrained network sees each sample once; at the end of every layer group below the head its
output is pooled as a head would read it (global average of a CNN's feature maps, the token pooling of
`model.pooling` for a transformer; TransferNet.group_features) and kept, on disk like the frozen-feature
cache. Then one linear classifier per group trains on those vectors (standardised, as linear probes are)
and is scored on the validation split. Low groups hold generic patterns (edges, word pieces), high groups
the pretraining task's concepts: on data close to the pretraining data the last group usually wins, on
data far from it a middle group often does.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from . import batching
from .atomic import atomic_path
from .config import RunConfig
from .devices import amp_dtype, autocast, eval_batch_size, pick_device
from .errors import TransferError
from .evaluate import compute_metrics
from .feature_cache import CACHE_DIR, backbone_digest, cache_key
from .models import BuiltModel, build_model
from .preparation import prepare_data

PROBE_EPOCHS = 200   # L-BFGS passes over the training features; most groups converge well before


@dataclass
class LayerScore:
    layer: str
    val_accuracy: float
    val_macro_f1: float
    features: int        # the width of the group's pooled output


@dataclass
class ProbeResult:
    model: str
    layers: list[LayerScore]     # input first

    @property
    def best_layer(self) -> str:
        """The group with the best validation accuracy (macro F1, then the higher group, breaks ties)."""
        best = max(range(len(self.layers)), key=lambda i: (self.layers[i].val_accuracy, self.layers[i].val_macro_f1, i))
        return self.layers[best].layer

    def to_dict(self) -> dict:
        return {"model": self.model, "layers": [asdict(s) for s in self.layers], "best_layer": self.best_layer}


def probe(config: RunConfig, *, cache_root: Path | None, epochs: int = PROBE_EPOCHS, allowed_roots: list | None = None,
          notify: Callable[[str], None] = lambda _: None) -> ProbeResult:
    """Score a linear head on every layer group of `config`'s model, with `config`'s data and split."""
    if epochs < 1:
        raise TransferError(f"the probe needs at least 1 epoch, not {epochs}; try --epochs {PROBE_EPOCHS}")
    config.check()
    data = prepare_data(config, allowed_roots=allowed_roots)
    with torch.random.fork_rng(devices=[]):   # (a run training in another thread keeps its random sequence)
        torch.manual_seed(config.train.seed)
        built = build_model(config.model.name, data.classes, pretrained=config.model.pretrained,
                            image_size=config.model.image_size, max_length=config.model.max_length,
                            runs_dir=cache_root, pooling=config.model.pooling)
    if built.modality != data.modality:
        raise TransferError(f"model {config.model.name} is for {built.modality}s but the data holds {data.modality}s; "
                            f"pick a {data.modality} model (see `python -m transfer_core models`)")
    if not built.net.can_probe(built.groups):
        raise TransferError(f"{config.model.name} cannot be read group by group; the probe works with the catalogue's "
                            "CNNs (efficientnet_lite0, ResNet, MobileNet, EfficientNet, ConvNeXt) and BERT-family "
                            "text models (minilm_l6, bert-base-uncased)")
    device = pick_device(config.train.device)
    built.net.to(device)
    amp = amp_dtype(device, config.train.mixed_precision)
    names = [g.name for g in built.groups[:-1]]
    split_features = {}
    for split in ("train", "val"):
        dataset = getattr(data.splits, split)
        samples = batching.sample_set(built, dataset, decoded=config.train.cache_images, cache_root=cache_root)
        key = cache_key(config, built, f"{dataset.fingerprint()}:{backbone_digest(built)}", split)
        path = cache_root / CACHE_DIR / f"probe-{_probe_key(key)}.safetensors" if cache_root is not None else None
        split_features[split] = (_cached_group_features(built, samples, path, len(names), device=device, amp=amp,
                                                        batch_size=eval_batch_size(config.train.batch_size, device)),
                                 torch.tensor(samples.targets))
    notify(f"{config.model.name}: every sample went through the frozen network once; "
           f"now a linear head trains on each of its {len(names)} layer groups")
    (train_x, train_y), (val_x, val_y) = split_features["train"], split_features["val"]
    scores = []
    for i, name in enumerate(names):
        metrics = linear_probe(train_x[i], train_y, val_x[i], val_y, data.classes, epochs=epochs)
        scores.append(LayerScore(name, metrics["accuracy"], metrics["macro_f1"] or 0.0, int(train_x[i].shape[1])))
        notify(f"{name}: validation accuracy {metrics['accuracy']:.3f}")
    return ProbeResult(config.model.name, scores)


def _probe_key(feature_key: str) -> str:
    return hashlib.sha256(json.dumps({"features": feature_key, "probe": 1}).encode()).hexdigest()[:24]


def _cached_group_features(built: BuiltModel, samples, path: Path | None, groups: int, **kwargs) -> list[torch.Tensor]:
    if path is not None and path.exists():
        try:
            stored = load_file(str(path))
            feats = [stored[f"group{i}"] for i in range(groups)]
            if all(f.shape[0] == len(samples) for f in feats):
                return feats
        except Exception:   # a damaged cache file is recomputed, never trusted
            pass
    feats = group_features(built, samples, **kwargs)
    if path is not None:
        try:
            with atomic_path(path) as tmp:
                save_file({f"group{i}": f.contiguous() for i, f in enumerate(feats)}, str(tmp))
        except OSError:
            pass   # a full or read-only disk costs the next probe a pass, nothing else
    return feats


@torch.inference_mode()
def group_features(built: BuiltModel, samples, *, batch_size: int, device: torch.device,
                   amp: torch.dtype | None) -> list[torch.Tensor]:
    """Per group below the head: its pooled output for every sample, in sample order, float32 on the CPU."""
    net = built.net
    net.eval()
    batches = batching.epoch_batches(len(samples), batch_size, shuffle=False, lengths=batching.sample_lengths(samples))
    chunks: list[list[torch.Tensor]] = []
    order = []
    for inputs, _, indices in batching.device_batches(built, samples, batches, device):
        with autocast(device, amp):
            outputs = net.group_features(**inputs)
        chunks.append([o.float().flatten(1).cpu() for o in outputs])
        order.append(torch.as_tensor(indices))
    where = torch.cat(order)
    result = []
    for per_batch in zip(*chunks):
        stacked = torch.cat(per_batch)
        ordered = torch.empty_like(stacked)
        ordered[where] = stacked   # texts run longest first; back to sample order
        result.append(ordered)
    return result


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 classes: list[str], *, epochs: int) -> dict:
    """Logistic regression on standardised features (scikit-learn's L-BFGS, at most `epochs` passes over
    the training set), scored on the validation set. A converged probe, so that a group's score measures
    its features, not how well a learning rate suited their width."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=epochs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # few epochs asked for: the probe stops there
        model.fit(train_x.numpy(), train_y.numpy())
    return compute_metrics(val_y.numpy(), model.predict(val_x.numpy()), classes)
