"""The in-memory form of a labelled data set, shared by loaders, splits, reports and the trainer."""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Literal

Modality = Literal["image", "text"]


@dataclass(frozen=True)
class Sample:
    id: str      # stable, human-readable: path relative to the data root for images, "row N" for text
    input: str   # image: absolute path of the file; text: the text itself
    label: str


@dataclass
class Dataset:
    modality: Modality
    samples: list[Sample]
    source: str = ""                                   # where it came from (path or demo:name)
    warnings: list[str] = field(default_factory=list)  # loader findings, one plain sentence each
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason) of items left out

    @property
    def classes(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.samples]

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels)
        return {c: counts[c] for c in self.classes}

    def subset(self, indices) -> "Dataset":
        return replace(self, samples=[self.samples[i] for i in indices], warnings=list(self.warnings), skipped=list(self.skipped))

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> str:
        """Hash of ids, labels and (for text) contents; image contents are covered by the data report's hashes."""
        h = hashlib.sha256(self.modality.encode())
        for s in self.samples:
            h.update(s.id.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
            h.update(s.label.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
            if self.modality == "text":
                h.update(s.input.encode("utf-8", "surrogatepass"))
            h.update(b"\1")
        return h.hexdigest()[:16]


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset | None = None
