"""Does a fully fine-tuned model evaluate as it trained? EfficientNet-Lite0 on digit images.

Prints, for the engine and for a plain PyTorch loop (with and without torch's own
`swa_utils.update_bn` after training), the last epoch's training-mode accuracy and the saved
model's accuracy in eval mode on the same training images and on held-out images.

    python benchmarks/batchnorm_gap.py [--per-class 30] [--epochs 8] [--image-size 64]

See docs/batchnorm.md. Needs the offline packages of requirements.txt; runs on the CPU in a few minutes.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from test_integration_offline import digit_folders  # noqa: E402
from train_speed import ImageFiles, lite0_model  # noqa: E402

LR, BATCH = 1e-3, 32


def engine(train: Path, val: Path, args) -> dict:
    from transfer_core.config import RunConfig
    from transfer_core.runs import evaluate_run
    from transfer_core.store import RunStore
    from transfer_core.trainer import fit
    store = RunStore(Path(tempfile.mkdtemp(prefix="bn-gap-")))
    cfg = RunConfig()
    cfg.data.path, cfg.data.val_path = str(train), str(val)
    cfg.model.name, cfg.model.image_size = "efficientnet_lite0", args.image_size
    cfg.freeze.preset, cfg.optim.lr, cfg.train.epochs, cfg.train.batch_size = "full", LR, args.epochs, BATCH
    result = fit(cfg.check(), store=store)
    history = json.loads((store.run_dir(result.run_id) / "metrics.json").read_text())["history"]
    return {"train_mode_last_epoch": history[-1]["train_accuracy"],
            "eval_training_images": evaluate_run(store, result.run_id, str(train))["accuracy"],
            "eval_held_out": evaluate_run(store, result.run_id, str(val))["accuracy"]}


def plain_loop(train: Path, val: Path, args) -> tuple[dict, dict]:
    """The tutorial loop: AdamW, cosine schedule, model.train() / model.eval(); then the same model
    after torch.optim.swa_utils.update_bn over the training images."""
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from transfer_core.data.loaders import load_dataset
    torch.manual_seed(0)
    size = args.image_size
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
                             transforms.Normalize([0.5] * 3, [0.5] * 3)])
    train_ds, val_ds = load_dataset(str(train)), load_dataset(str(val))
    index = {c: i for i, c in enumerate(train_ds.classes)}
    train_set, val_set = ImageFiles(train_ds, index, tf), ImageFiles(val_ds, index, tf)
    loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = lite0_model(len(index), size, head_only=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader))
    criterion = torch.nn.CrossEntropyLoss()
    for _ in range(args.epochs):
        model.train()
        correct = seen = 0
        for images, labels in loader:
            logits = model(images)
            loss = criterion(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
    train_mode = correct / seen

    def accuracy(net, dataset) -> float:
        net.eval()
        right = total = 0
        with torch.no_grad():
            for images, labels in DataLoader(dataset, batch_size=64):
                right += int((net(images).argmax(1) == labels).sum())
                total += len(labels)
        return right / total

    plain = {"train_mode_last_epoch": train_mode, "eval_training_images": accuracy(model, train_set),
             "eval_held_out": accuracy(model, val_set)}
    updated = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn((images for images, _ in DataLoader(train_set, batch_size=BATCH)), updated)
    fixed = {"train_mode_last_epoch": train_mode, "eval_training_images": accuracy(updated, train_set),
             "eval_held_out": accuracy(updated, val_set)}
    return plain, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train, val = digit_folders(Path(tempfile.mkdtemp(prefix="bn-digits-")), per_class_train=args.per_class,
                               per_class_val=10)
    rows = {"engine": engine(train, val, args)}
    rows["plain PyTorch loop"], rows["plain loop + swa_utils.update_bn"] = plain_loop(train, val, args)
    print(f"EfficientNet-Lite0, full fine-tuning, {10 * args.per_class} digit images, {args.image_size} px, "
          f"{args.epochs} epochs, lr {LR}")
    print(f"| {'method':34} | train mode, last epoch | eval, training images | eval, held-out |")
    print(f"|{'-' * 36}|{'-' * 24}|{'-' * 23}|{'-' * 16}|")
    for name, row in rows.items():
        print(f"| {name:34} | {row['train_mode_last_epoch']:22.3f} | {row['eval_training_images']:21.3f} | "
              f"{row['eval_held_out']:14.3f} |")


if __name__ == "__main__":
    main()
