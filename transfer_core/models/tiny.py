"""Tiny random-initialised models for tests and smoke runs: seconds to build and train, no downloads."""
from __future__ import annotations

from torch import nn

from .base import BuiltModel, ImagePreprocess, ModelSpec, TransferNet
from .grouping import groups_from_prefixes
from .heads import make_head, replace_head_torch
from .huggingface import quiet_transformers, replace_head_hf, reset_head, text_preprocess, wrap
from .offline import minilm_dir


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyCNN(TransferNet):
    """Three conv+BatchNorm blocks and a new head (model.head_hidden: linear or with a hidden layer); forward(pixel_values) = head_logits(features(pixel_values))
    = forward_from(cut, prefix(cut, pixel_values))."""

    def __init__(self, num_classes: int, dropout: float = 0.0, hidden: int = 0):
        super().__init__()
        self.block1 = _conv(3, 8, 2)
        self.block2 = _conv(8, 16, 2)
        self.block3 = _conv(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = make_head(32, num_classes, dropout, hidden)

        self.supports_feature_split = True
        # Cuts between layer groups (block1, block2, block3, head): {cut: blocks in the frozen prefix}.
        self.prefix_cuts = {1: 1, 2: 2}

    def features(self, pixel_values):
        return self.pool(self.block3(self.block2(self.block1(pixel_values)))).flatten(1)

    def prefix(self, cut, pixel_values):
        x = pixel_values
        for block in (self.block1, self.block2, self.block3)[:self.prefix_cuts[cut]]:
            x = block(x)
        return x

    def forward_from(self, cut, hidden):
        x = hidden
        for block in (self.block1, self.block2, self.block3)[self.prefix_cuts[cut]:]:
            x = block(x)
        return self.head_logits(self.pool(x).flatten(1))

    def head_logits(self, features):
        return self.head(features)

    def forward(self, pixel_values):
        return self.head_logits(self.features(pixel_values))


def tiny_cnn_groups(net: nn.Module):
    return groups_from_prefixes(net, [("block1", ["block1"]), ("block2", ["block2"]), ("block3", ["block3"]), ("head", ["head"])])


def build_tiny_cnn(spec: ModelSpec, classes: list[str], *, pretrained: bool, head_dropout: float, head_hidden: int,
                   image_size: int, max_length: int) -> BuiltModel:
    net = TinyCNN(len(classes), head_dropout, head_hidden)
    return BuiltModel(spec=spec, net=net, groups=tiny_cnn_groups(net), classes=list(classes),
                      preprocess=ImagePreprocess(image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), export_format="torch")


def build_tiny_bert(spec: ModelSpec, classes: list[str], *, pretrained: bool, head_dropout: float, head_hidden: int,
                    image_size: int, max_length: int) -> BuiltModel:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, classifier_dropout=head_dropout,
                        id2label=dict(enumerate(classes)),
                        label2id={c: i for i, c in enumerate(classes)})
    model = BertForSequenceClassification(config)
    if head_hidden:
        reset_head(model, classes, head_dropout, head_hidden)
    return wrap(spec, model, classes, text_preprocess(tokenizer, config, max_length, spec.name))


def specs() -> list[ModelSpec]:
    note = "Random weights, for tests and smoke runs only (it learns little)."
    return [
        ModelSpec(name="tiny_cnn", modality="image", source="test", offline=True, num_params=6_200,
                  default_image_size=32, description=f"Tiny 3-layer CNN. {note}", builder=build_tiny_cnn,
                  replace_head=replace_head_torch, head_path="head", groups_of=tiny_cnn_groups),
        ModelSpec(name="tiny_bert", modality="text", source="test", offline=True, num_params=1_000_000,
                  description=f"Tiny 2-layer BERT with the MiniLM tokenizer. {note}", builder=build_tiny_bert,
                  replace_head=replace_head_hf),
    ]
