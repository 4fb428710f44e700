"""Hostile class labels, file names and texts for the markup and CSV tests, and data sets made of them."""
from __future__ import annotations

import csv
from pathlib import Path

from apphelpers import SHAPES, shape_image

# Each would do something if a page rendered it as Markdown or Plotly HTML (port 9 is never served).
IMAGE = "![t](http://127.0.0.1:9/pixel.png)"
LINK = "[click](http://127.0.0.1:9/x)"
COLOUR = ":red[red]"
LATEX = "$x^2$"
ANCHOR = '<a href="http://127.0.0.1:9/a">anchor</a>'
FORMULA = '=HYPERLINK("http://127.0.0.1:9/f","open")'
MARKUP_LABELS = (IMAGE, LINK, COLOUR, LATEX)
# Folder and file names cannot hold "/": the same tricks with relative addresses.
FOLDER_LABELS = ("![t](pixel.png)", "[click](x)", ":red[red]", "$x^2$")
FILE_NAMES = ("[f](y)", ":blue[f]", "$f^2$")

def image_csv(root: Path, labels: tuple[str, ...], n: int = 8) -> Path:
    """Images plus labels.csv (image,label) whose labels are `labels`: any text works as a label there."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, label in enumerate(labels):
        for i in range(n):
            name = f"img_{k}_{i}.png"
            shape_image(SHAPES[k % len(SHAPES)], 1000 + 50 * k + i).save(root / name)
            rows.append((name, label))
    path = root / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "label"])
        w.writerows(rows)
    return path


def image_folder(root: Path, n: int = 8) -> Path:
    """One folder per hostile class name, the first images of each with hostile file names."""
    for k, label in enumerate(FOLDER_LABELS):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{FILE_NAMES[i]}.png" if i < len(FILE_NAMES) else f"img_{i}.png"
            shape_image(SHAPES[k % len(SHAPES)], 2000 + 50 * k + i).save(folder / name)
    return root


def text_csv(path: Path, n: int = 8) -> Path:
    """Texts and labels that are Markdown, HTML or spreadsheet formulas."""
    labels = (*MARKUP_LABELS, FORMULA)
    words = ("alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu", "nu xi omicron")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for k, label in enumerate(labels):
            for i in range(n):
                w.writerow([f"{IMAGE} {words[k]} {i} {LINK} {COLOUR}", label])
    return path
