"""Seconds to explain one input (transfer_core/explain.py) with the offline backbones: a Grad-CAM heatmap for
EfficientNet-Lite0 at 224 px, Grad-CAM on the tokens of ViT-B/16 at 224 px (random weights: its pretrained ones
download) and integrated gradients (50 steps) for all-MiniLM-L6-v2, against one plain prediction of the same input in the same process (the ratio is what explaining costs).

    python benchmarks/explain_speed.py [--repeats 5]

The models get a new two-class head (explanations read the network, not what it learned). Prints one line per
model and one JSON object last.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cpu_layout import timed  # noqa: E402   (the median of timed calls after a warm-up)
from transfer_core.evaluate import predict_inputs  # noqa: E402
from transfer_core.explain import explain  # noqa: E402
from transfer_core.models import build_model  # noqa: E402

SENTENCE = "The central bank raised interest rates again on Thursday, surprising most of the market."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        photo = Path(scratch) / "photo.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(photo)
        for name, item, size in (("efficientnet_lite0", str(photo), {"image_size": 224}),
                                 ("vit_b_16", str(photo), {"image_size": 224, "pretrained": False}),
                                 ("minilm_l6", SENTENCE, {"max_length": 128})):
            built = build_model(name, ["a", "b"], **size)
            built.net.eval()
            explaining = timed(lambda b=built, i=item: explain(b, i), args.repeats)
            predicting = timed(lambda b=built, i=item: predict_inputs(b, [i]), args.repeats)
            rows.append({"model": name, "explain_seconds": round(explaining, 3), "predict_seconds": round(predicting, 3),
                         "ratio": round(explaining / predicting, 1), "threads": torch.get_num_threads()})
            print(f"{name}: explain {explaining:.3f} s, predict {predicting:.3f} s (x{explaining / predicting:.1f})",
                  flush=True)
    print(json.dumps({"explain": rows}))


if __name__ == "__main__":
    main()
