"""CIFAR-10/100 as torchvision downloads them: python pickles (``cifar-10-batches-py/data_batch_1..5,
test_batch, batches.meta``; ``cifar-100-python/train, test, meta``), written out once as PNG files.

Rows: ``images/<train|test>/<index:05d>.png``, index = position in the split (batch order). Split: the
official train / test sets; no val (the paper calibrated on test). Class names: the meta file's
``label_names`` / ``fine_label_names``, underscores to spaces (``aquarium_fish`` -> ``aquarium fish``).
"""

from __future__ import annotations

import io
import itertools
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.datasets.prepare.base import Converted, find_root, missing, words
from susx_cli.errors import SusxError

CLEANING = ["underscores to spaces"]


@dataclass(frozen=True)
class Layout:
    dataset: str
    folder: str  # what torchvision extracts into
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)

    @property
    def needs(self) -> str:
        return f"{self.folder}/ with {', '.join(self.files)} (torchvision's download)"


CIFAR10 = Layout(
    "cifar10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    b"labels",
    b"label_names",
)
CIFAR100 = Layout(
    "cifar100", "cifar-100-python", ("train",), "test", "meta", b"fine_labels", b"fine_label_names"
)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles CIFAR's dicts of bytes, lists and numpy arrays, and nothing that runs other code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def _root(layout: Layout, source: Path) -> Path:
    root = find_root(source, (layout.folder,), lambda p: (p / layout.meta).is_file())
    if root is None:
        raise missing(layout.dataset, f"{layout.folder}/{layout.meta}", source, layout.needs)
    for name in layout.files:
        if not (root / name).is_file():
            raise missing(layout.dataset, name, root, layout.needs)
    return root


def inputs(layout: Layout, source: Path) -> list[Path]:
    root = _root(layout, source)
    return [root / name for name in layout.files]


def _load(path: Path, layout: Layout) -> dict[bytes, Any]:
    try:
        data = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as exc:  # a truncated or foreign file: any unpickling failure means the same
        raise SusxError(
            f"{layout.dataset}: {path.name} under {path.parent} is damaged ({exc.__class__.__name__})",
            hint="download it again (torchvision: download=True)",
        ) from None
    if not isinstance(data, dict):
        raise SusxError(f"{layout.dataset}: {path} is not a CIFAR batch", hint="download it again")
    return data


def _field(batch: dict[bytes, Any], key: bytes, path: Path, layout: Layout) -> Any:
    if key not in batch:
        raise SusxError(
            f"{layout.dataset}: {path.name} has no {key.decode()!r} entry",
            hint=f"{layout.dataset} needs {layout.needs}",
        )
    return batch[key]


def convert(layout: Layout, source: Path, seed: int) -> Converted:
    """Read labels and class names; the returned writer turns the pixel rows into PNG files."""
    import numpy as np

    root = _root(layout, source)
    meta_path = root / layout.meta
    names = [
        words(n.decode("utf-8"))
        for n in _field(_load(meta_path, layout), layout.names_key, meta_path, layout)
    ]
    pixels: dict[str, list[Any]] = {"train": [], "test": []}
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for split, files in (("train", layout.train), ("test", (layout.test,))):
        for name in files:
            path = root / name
            batch = _load(path, layout)
            data = np.asarray(_field(batch, b"data", path, layout), dtype=np.uint8)
            labels = [int(x) for x in _field(batch, layout.label_key, path, layout)]
            if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
                raise SusxError(
                    f"{layout.dataset}: {name} holds {data.shape} pixels for {len(labels)} labels, not N x 3072",
                    hint="download it again",
                )
            if any(not 0 <= label < len(names) for label in labels):
                raise SusxError(
                    f"{layout.dataset}: {name} has labels outside 0..{len(names) - 1} ({layout.meta} names "
                    f"{len(names)} classes)",
                    hint="download it again",
                )
            pixels[split].append(data)
            start = len(rows[split])
            rows[split] += [(f"images/{split}/{start + i:05d}.png", label) for i, label in enumerate(labels)]

    def write_images(folder: Path) -> int:
        return _write_pngs(folder, rows, pixels)

    return Converted(
        names,
        rows,
        {"method": "official", "splits": {"train": "train batches", "test": "test batch"}},
        CLEANING,
        write_images=write_images,
    )


def _write_pngs(folder: Path, rows: dict[str, list[tuple[str, int]]], pixels: dict[str, list[Any]]) -> int:
    """Each pixel row (3072 bytes: the red, green, blue 32x32 planes) as a PNG; present files are kept."""
    from PIL import Image

    from susx_cli.artifacts import prepared
    from susx_cli.progress import bar

    written = 0
    total = sum(len(r) for r in rows.values())
    with bar("writing CIFAR images", total, unit="img") as progress:
        for split, split_rows in rows.items():
            for (rel, _), row in zip(split_rows, itertools.chain.from_iterable(pixels[split]), strict=True):
                target = folder / rel
                if not target.is_file():  # resuming: a present file is whole (written by rename)
                    buffer = io.BytesIO()
                    Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0)).save(buffer, format="PNG")
                    written += prepared.write_image(target, buffer.getvalue())
                progress.advance()
    return written
