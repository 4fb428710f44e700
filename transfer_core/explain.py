"""Why a trained model predicts what it does, read through the model interface (TransferNet.prefix and
forward_from), never by reaching into a network:

- images: Grad-CAM (Selvaraju et al. 2017), Captum's LayerGradCam, on the last feature maps the interface
  exposes (the output of the groups below the last body group), or for a vision transformer on the tokens
  its last block reads (TransferNet.token_layer; the patch tokens laid out on their grid), upsampled to the
  image and scaled to 0..1;
- texts: integrated gradients (Sundararajan et al. 2017) over the token embeddings, Captum's
  LayerIntegratedGradients, from a baseline of padding tokens between the special tokens (as in Captum's
  BERT tutorial); one score per token, positive where the token pushes towards the class.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .batching import image_transform
from .errors import RunError
from .evaluate import _as_rgb, eval_mode
from .models.base import BuiltModel, ImagePreprocess, TextPreprocess, TransferNet, logits_of

IG_STEPS = 50
GRAD_CAM_MAPS = "Grad-CAM on the last feature maps (Captum's LayerGradCam)"
GRAD_CAM_TOKENS = "Grad-CAM on the image patches the last transformer block reads, one cell per patch (Captum's LayerGradCam)"
INTEGRATED_GRADIENTS = "Integrated gradients over the word embeddings from a text of padding (Captum's LayerIntegratedGradients)"


@dataclass
class Explanation:
    predicted: str
    probability: float              # of the predicted class
    target: str                     # the class explained (the predicted one unless another was asked for)
    target_probability: float
    heatmap: np.ndarray | None = None          # images: (H, W) in 0..1, the model's input size
    map_size: tuple[int, int] | None = None    # images: the feature maps' own size (the heatmap's real resolution)
    image: Image.Image | None = None           # images: the input as the model sees it (resized, cropped)
    tokens: list[tuple[str, float]] | None = None   # texts: (token, score), scores scaled to at most 1 in size
    method: str = ""                # how the scores were found, in a phrase for the user


class _ThroughCut(nn.Module):
    """net(**batch) as forward_from(cut, prefix(cut, **batch)), with the prefix's output passing through
    `at_cut` (an identity) so that an attribution method can read and perturb it there."""

    def __init__(self, net: TransferNet, cut: int):
        super().__init__()
        self.net, self.cut = net, cut
        self.at_cut = nn.Identity()

    def forward(self, *inputs: torch.Tensor, names: tuple[str, ...] = ("pixel_values",)) -> torch.Tensor:
        hidden: Any = self.net.prefix(self.cut, **dict(zip(names, inputs)))
        if isinstance(hidden, dict):    # a transformer's hidden states and their mask
            hidden = {**hidden, "hidden_states": self.at_cut(hidden["hidden_states"])}
        else:
            hidden = self.at_cut(hidden)
        return logits_of(self.net.forward_from(self.cut, hidden))


def _cut(built: BuiltModel, *, last: bool) -> int:
    cuts = sorted(getattr(built.net, "prefix_cuts", {}) or {})
    if not cuts:
        raise RunError(f"{built.spec.name} cannot be explained: the app cannot read its inner layers "
                       "(it has no cut between layer groups)")
    return cuts[-1] if last else cuts[0]


def _class_index(built: BuiltModel, target: str | None, predicted: int) -> int:
    if target is None:
        return predicted
    if target not in built.classes:
        raise RunError(f"the model has no class {target!r}; it knows: {', '.join(built.classes)}")
    return built.classes.index(target)


def explain(built: BuiltModel, item, target: str | None = None) -> Explanation:
    """Explain one input (an image path, PIL image or open file for image models; a string for text models)."""
    if isinstance(built.preprocess, TextPreprocess):
        if not isinstance(item, str):
            raise RunError("this is a text model; give it a text")
        return _explain_text(built, item, target)
    if isinstance(item, str) and not _looks_like_path(item):
        raise RunError("this is an image model; give it an image file")
    return _explain_image(built, item, target)


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and len(text) < 4096


def _probabilities(built: BuiltModel, **batch) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(logits_of(built.net(**batch)).float(), dim=-1)[0].numpy()


def _explain_image(built: BuiltModel, item, target: str | None) -> Explanation:
    from captum.attr import LayerAttribution, LayerGradCam

    assert isinstance(built.preprocess, ImagePreprocess)
    rgb = _as_rgb(item)
    pixels = image_transform(built.preprocess)(rgb).unsqueeze(0)
    with eval_mode(built.net):
        probs = _probabilities(built, pixel_values=pixels)
        index = _class_index(built, target, int(probs.argmax()))
        tokens = built.net.token_layer()
        method = (GRAD_CAM_TOKENS if tokens is not None else GRAD_CAM_MAPS)
        with torch.enable_grad():
            if tokens is not None:
                maps = _tokens_on_grid(_token_grad_cam(built.net, tokens, pixels, index))
            else:
                model = _ThroughCut(built.net, _cut(built, last=True))
                maps = LayerGradCam(model, model.at_cut).attribute(pixels, target=index, relu_attributions=True)
    map_size = (int(maps.shape[-2]), int(maps.shape[-1]))
    heat = LayerAttribution.interpolate(maps.detach(), tuple(pixels.shape[-2:]), interpolate_mode="bilinear")[0, 0]
    heat = heat.clamp(min=0)
    heat = (heat / heat.max()).numpy() if float(heat.max()) > 0 else heat.numpy()
    shown = _resize_crop(rgb, pixels.shape[-1])
    return Explanation(built.classes[int(probs.argmax())], float(probs.max()), built.classes[index],
                       float(probs[index]), heatmap=heat.astype(np.float32), image=shown, map_size=map_size,
                       method=method)


class _TokensAsChannels(nn.Module):
    """The layer Captum attributes to: a transformer's tokens turned to (N, width, tokens), since Grad-CAM
    weighs and sums channels and Captum takes dimension 1 for them."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens


@contextmanager
def _through(layer: nn.Module, probe: _TokensAsChannels):
    """While open, `layer`'s output passes through `probe`, unchanged."""
    handle = layer.register_forward_hook(lambda _module, _args, out: probe(out.transpose(1, 2)).transpose(1, 2))
    try:
        yield
    finally:
        handle.remove()


def _token_grad_cam(net: TransferNet, layer: nn.Module, pixels: torch.Tensor, index: int) -> torch.Tensor:
    """Grad-CAM over a vision transformer's tokens: (N, 1, tokens)."""
    from captum.attr import LayerGradCam
    probe = _TokensAsChannels()
    with _through(layer, probe):
        cam = LayerGradCam(lambda x: logits_of(net(pixel_values=x)), probe)
        return cam.attribute(pixels, target=index, relu_attributions=True)


def _tokens_on_grid(maps: torch.Tensor) -> torch.Tensor:
    """(N, 1, tokens) to (N, 1, side, side): the patch tokens on their grid, without the leading class token
    (and DeiT's distillation token)."""
    tokens = maps.shape[-1]
    side = math.isqrt(tokens)
    extra = tokens - side * side
    if side == 0 or extra > 2:
        raise RunError("this model's tokens do not lie on a square grid, so they cannot be drawn over the image")
    return maps[:, :, extra:].reshape(maps.shape[0], 1, side, side)


def _resize_crop(image: Image.Image, size: int) -> Image.Image:
    """The image as the eval transform sees it: shorter side to `size`, centre square."""
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def _explain_text(built: BuiltModel, text: str, target: str | None) -> Explanation:
    from captum.attr import LayerIntegratedGradients

    pre = built.preprocess
    assert isinstance(pre, TextPreprocess)
    tokenizer = pre.tokenizer
    batch = dict(tokenizer([text], truncation=True, max_length=pre.max_length, return_tensors="pt"))
    ids, mask = batch["input_ids"], batch.get("attention_mask", torch.ones_like(batch["input_ids"]))
    with eval_mode(built.net):
        probs = _probabilities(built, input_ids=ids, attention_mask=mask)
        index = _class_index(built, target, int(probs.argmax()))
        model = _ThroughCut(built.net, _cut(built, last=False))
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True),
                               dtype=torch.bool)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        baseline = torch.where(special, ids[0], torch.full_like(ids[0], pad)).unsqueeze(0)
        ig = LayerIntegratedGradients(lambda i, m: model(i, m, names=("input_ids", "attention_mask")), model.at_cut)
        with torch.enable_grad():
            attributions = ig.attribute(ids, baselines=baseline, additional_forward_args=(mask,), target=index,
                                        n_steps=IG_STEPS, internal_batch_size=IG_STEPS)
    scores = attributions.sum(dim=-1)[0].detach()
    scores = scores / scores.abs().max() if float(scores.abs().max()) > 0 else scores
    names = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    tokens = [(name, float(score)) for name, score, is_special in zip(names, scores, special) if not is_special]
    return Explanation(built.classes[int(probs.argmax())], float(probs.max()), built.classes[index],
                       float(probs[index]), tokens=tokens, method=INTEGRATED_GRADIENTS)


def overlay(explanation: Explanation, alpha: float = 0.5) -> Image.Image:
    """The heatmap over the image, in a blue-to-red colour scale (red: where the class's evidence is)."""
    assert explanation.image is not None and explanation.heatmap is not None
    heat = explanation.heatmap
    colours = np.stack([heat, 1 - np.abs(2 * heat - 1), 1 - heat], axis=-1)   # blue (0) -> green -> red (1)
    coloured = Image.fromarray((colours * 255).astype(np.uint8), "RGB")
    return Image.blend(explanation.image.convert("RGB"), coloured, alpha)
