"""Converters from a dataset's usual download to the registry's ``split-file`` layout, one module per
source layout, looked up by dataset id in ``CONVERTERS`` (``susx datasets prepare``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from susx_cli.datasets.prepare import birdsnap, caltech256, cifar, country211, cub, imagenet_r
from susx_cli.datasets.prepare.base import Converted


@dataclass(frozen=True)
class Converter:
    source: str  # the download it reads, in words
    inputs: Callable[[Path], list[Path]]  # the files it reads (raises one line when one is missing)
    convert: Callable[[Path, int], Converted]  # (download, seed) -> splits
    published_split: bool = False  # the SuS-X authors published their split (--split-file)
    partial_downloads: bool = False  # images may be missing from a complete download (Birdsnap)


CONVERTERS: dict[str, Converter] = {
    "cifar10": Converter(
        cifar.CIFAR10.needs, partial(cifar.inputs, cifar.CIFAR10), partial(cifar.convert, cifar.CIFAR10)
    ),
    "cifar100": Converter(
        cifar.CIFAR100.needs, partial(cifar.inputs, cifar.CIFAR100), partial(cifar.convert, cifar.CIFAR100)
    ),
    "caltech256": Converter(caltech256.NEEDS, caltech256.inputs, caltech256.convert, published_split=True),
    "cub": Converter(cub.NEEDS, cub.inputs, cub.convert, published_split=True),
    "birdsnap": Converter(
        birdsnap.NEEDS, birdsnap.inputs, birdsnap.convert, published_split=True, partial_downloads=True
    ),
    "country211": Converter(country211.NEEDS, country211.inputs, country211.convert),
    "imagenet-r": Converter(imagenet_r.NEEDS, imagenet_r.inputs, imagenet_r.convert),
}
