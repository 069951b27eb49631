"""Registry of datasets susx knows by name: the 19 of the SuS-X paper, with where their classes and
splits come from, their photo template and CuPL question set, the split the paper calibrated on, and
the paper's figures where a later paper or repository quotes them (each row with its source).

Local layout under a data root (``--data-root ROOT``), one folder per dataset (``DatasetSpec.folder``):

- ``coop-split``: CoOp's ``split_zhou_*.json`` (rows ``[relative_path, label, classname]`` in
  ``train``/``val``/``test``) beside the image folder the rows are relative to;
- ``fgvc-variants``: FGVC Aircraft as CoOp reads it: ``variants.txt`` (class order) and
  ``images_variant_{train,val,test}.txt`` (``<image id> <variant>`` per line), images in ``images/<id>.jpg``;
- ``imagenet-folders``: 1000 WordNet-id folders (``n01440764/`` ...); the label of a folder is the
  position of its id among the 1000 sorted ids (ImageNet's own label definition), names from open_clip;
- ``split-file``: ``split_susx_<Name>.json`` in the CoOp row format, paths relative to the folder, made
  by ``susx datasets prepare NAME --from DOWNLOAD`` (``datasets/prepare/``: one converter per download
  layout; each converter's docstring states its split and class-name rules, recorded in the file).

Besides these, ``resolve`` takes a dataset file (``datasets/own.py``: a class list plus a split file, class
folders or ``path,label`` tables per split), layout ``dataset-file``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.errors import SusxError
from susx_cli.templates import DEFAULT_PHOTO

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# open_clip's ImageNet names repeat two: 657/744 (synsets "missile" / "projectile, missile") and
# 836/837 ("sunglass" / "sunglasses, dark glasses, shades"). Class names must be unique, so the second
# of each pair takes another name from its own synset.
IMAGENET_RENAMES = {744: "projectile", 837: "dark glasses"}


def _imagenet() -> list[str]:
    from susx_cli import shipped  # open_clip's 1000 names, shipped as data (no torch import)

    names = shipped.imagenet_classnames()
    for index, name in IMAGENET_RENAMES.items():
        names[index] = name
    return names


CLASS_NAMES = {"imagenet": _imagenet, "imagenet-sketch": _imagenet, "cifar10": lambda: list(CIFAR10)}


def class_names(dataset: str) -> list[str]:
    key = dataset.lower()
    if key not in CLASS_NAMES:
        raise SusxError(
            f"no built-in class list for dataset {dataset!r}",
            hint=f"built-in: {', '.join(sorted(CLASS_NAMES))}; otherwise pass --classes FILE (a CoOp split file works)",
        )
    return CLASS_NAMES[key]()


# ---------------------------------------------------------------------------------------------------
# The paper's 19 datasets

LAYOUTS = ("coop-split", "fgvc-variants", "imagenet-folders", "split-file", "dataset-file")

# The paper's figures (OpenAI CLIP RN50, top-1 %; docs/METHOD.md, "Paper figures"). The SuS-X paper's own
# tables could not be read; every SuS-X figure below is a later paper's or repository's quote of it, and
# GDA's are its own. PAPER_SOURCES names the source of each row. A dataset without a figure has none here.
PAPER_MEAN_KEY = "mean11"  # the mean over the 11 CoOp datasets
# DMN (Zhang et al., CVPR 2024), Table 3, RN50 block, in its column order; its Mean column is printed there.
_DMN_COLUMNS = (
    "imagenet",
    "flowers102",
    "dtd",
    "oxford_pets",
    "stanford_cars",
    "ucf101",
    "caltech101",
    "food101",
    "sun397",
    "fgvc_aircraft",
    "eurosat",
)
_SUSX_SD_C = (61.84, 67.72, 50.59, 85.34, 57.27, 61.54, 89.53, 77.58, 62.95, 19.47, 45.57)
# TIP-X with K labelled shots, K = 1, 2, 4, 8, 16, as the APE repository transcribes it. The GDA repository's
# transcription (mrflogs/ICLR24, exp.log) agrees in every cell but two 16-shot ones: ImageNet 62.61 (APE:
# 62.16) and EuroSAT 73.12 (APE: 73.16). APE's are kept: the quoted 16-shot mean, 71.36, is the mean of them.
_TIPX_SHOTS = (1, 2, 4, 8, 16)
_TIPX = {
    "imagenet": (60.73, 61.03, 61.10, 61.57, 62.16),
    "caltech101": (88.39, 88.60, 89.29, 89.81, 90.70),
    "dtd": (46.98, 50.11, 55.20, 59.33, 63.53),
    "eurosat": (55.88, 61.54, 68.14, 68.85, 73.16),
    "fgvc_aircraft": (20.10, 21.93, 22.92, 26.91, 30.12),
    "food101": (77.38, 77.53, 77.50, 77.87, 77.93),
    "flowers102": (73.44, 79.41, 85.92, 88.59, 90.29),
    "oxford_pets": (85.41, 87.95, 88.28, 89.12, 89.86),
    "stanford_cars": (58.79, 60.27, 63.84, 65.81, 67.30),
    "sun397": (61.69, 63.38, 64.94, 66.28, 68.00),
    "ucf101": (62.78, 66.45, 66.87, 68.88, 71.95),
}
_TIPX_MEANS = (62.87, 65.29, 67.64, 69.37, 71.36)  # of the values above, rounded
_TIP_ADAPTER_MEANS = (62.32, 64.64, 66.51, 68.41, 70.36)  # of APE's 'Tip_adapter' values, rounded
# GDA (Wang et al., ICLR 2024) at the same shots, its own figures: the 'ours' rows of its repository's exp.log.
_GDA = {
    "imagenet": (60.64, 61.23, 61.71, 62.46, 63.82),
    "caltech101": (87.28, 88.63, 90.62, 91.35, 92.55),
    "dtd": (46.26, 51.26, 57.47, 62.77, 66.51),
    "eurosat": (58.30, 67.88, 75.40, 81.70, 86.12),
    "fgvc_aircraft": (17.29, 22.45, 28.24, 34.07, 40.61),
    "food101": (77.42, 77.87, 77.83, 78.43, 79.05),
    "flowers102": (72.11, 82.91, 89.73, 93.23, 95.72),
    "oxford_pets": (85.49, 86.69, 87.19, 89.12, 88.81),
    "stanford_cars": (56.77, 59.30, 62.75, 68.93, 75.12),
    "sun397": (59.95, 63.64, 65.27, 68.58, 70.70),
    "ucf101": (62.61, 66.28, 71.31, 75.74, 77.53),
}
PAPER_NUMBERS: dict[str, dict[str, float]] = {
    "zero-shot": {"imagenet": 60.32, PAPER_MEAN_KEY: 58.53},
    "cupl": {"imagenet": 61.45, PAPER_MEAN_KEY: 60.31},
    "tip-x-sd": {**dict(zip(_DMN_COLUMNS, _SUSX_SD_C, strict=True)), PAPER_MEAN_KEY: 61.76},
    "cafo": {"imagenet": 62.74, PAPER_MEAN_KEY: 62.23},
    **{
        f"tip-x-{k}shot": {**{d: row[i] for d, row in _TIPX.items()}, PAPER_MEAN_KEY: _TIPX_MEANS[i]}
        for i, k in enumerate(_TIPX_SHOTS)
    },
    **{
        f"tip-adapter-{k}shot": {PAPER_MEAN_KEY: v}
        for k, v in zip(_TIPX_SHOTS, _TIP_ADAPTER_MEANS, strict=True)
    },
    **{  # the repository prints no mean: it is the mean of the 11 values
        f"gda-{k}shot": {
            **{d: row[i] for d, row in _GDA.items()},
            PAPER_MEAN_KEY: round(sum(row[i] for row in _GDA.values()) / len(_GDA), 2),
        }
        for i, k in enumerate(_TIPX_SHOTS)
    },
}
_DMN = "quoted in DMN (Zhang et al., CVPR 2024), Table 3, RN50"
_APE = "quoted in the APE repository (yangyangyang127/APE), APE_results.ipynb"
PAPER_SOURCES: dict[str, str] = {
    "zero-shot": f"{_DMN}, row 'Ensemble'",
    "cupl": f"{_DMN}, row 'CuPL'",
    "tip-x-sd": f"{_DMN}, row 'SuS-X-SD-C'",
    "cafo": f"{_DMN}, row 'CaFo'",
    **{f"tip-x-{k}shot": f"{_APE}, 'Tip_X' (the mean computed from them)" for k in _TIPX_SHOTS},
    **{f"tip-adapter-{k}shot": f"{_APE}, mean computed from 'Tip_adapter'" for k in _TIPX_SHOTS},
    **{
        f"gda-{k}shot": "GDA's own figures, its repository (mrflogs/ICLR24), exp.log, rows 'ours' (the mean "
        "computed from them)"
        for k in _TIPX_SHOTS
    },
}
# TDA's published top-1 (%), per model ("METHOD@ARCH/PRETRAINED" keys): RN50 from the TDA README, ViT-B/16 as
# quoted in DPE (NeurIPS 2024) Tables 1-2; single runs with per-dataset configs (docs/METHOD.md).
_TDA_DATASETS = (
    "imagenet",
    "imagenet-a",
    "imagenet-v2",
    "imagenet-r",
    "imagenet-sketch",
    "fgvc_aircraft",
    "caltech101",
    "stanford_cars",
    "dtd",
    "eurosat",
    "flowers102",
    "food101",
    "oxford_pets",
    "sun397",
    "ucf101",
)
_TDA_FIGURES = {
    "RN50/openai": (
        61.35,
        30.29,
        55.54,
        62.58,
        38.12,
        17.61,
        89.70,
        57.78,
        43.74,
        42.11,
        68.74,
        77.75,
        86.18,
        62.53,
        64.18,
    ),
    "ViT-B-16/openai": (
        69.51,
        60.11,
        64.67,
        80.24,
        50.54,
        23.91,
        94.24,
        67.28,
        47.40,
        58.00,
        71.42,
        86.14,
        88.63,
        67.62,
        70.66,
    ),
}
PAPER_NUMBERS.update(
    {f"tda@{model}": dict(zip(_TDA_DATASETS, nums, strict=True)) for model, nums in _TDA_FIGURES.items()}
)
PAPER_SOURCES.update(
    {
        "tda@RN50/openai": "TDA's README (kdiAAA/TDA), RN50, single runs with per-dataset settings",
        "tda@ViT-B-16/openai": "quoted in DPE (NeurIPS 2024) Tables 1-2, ViT-B/16",
    }
)
PAPER_ROW_LABELS = {
    "tda@RN50/openai": "TDA, RN50 (TDA README)",
    "tda@ViT-B-16/openai": "TDA, ViT-B/16 (as quoted in DPE)",
    "zero-shot": "zero-shot CLIP, 7-template ensemble",
    "cupl": "CuPL",
    "tip-x-sd": "SuS-X-SD-C",
    "cafo": "CaFo (zero-shot variant)",
}


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    name: str
    num_classes: int
    layout: str  # one of LAYOUTS
    folder: str  # folder under the data root
    split_file: str | None = None  # relative to the folder (coop-split, split-file)
    image_dir: str = ""  # where the split's relative paths start, relative to the folder
    calibration_split: str = "val"  # the split the paper searched hyperparameters on
    test_split: str = "test"
    torchvision: str | None = None  # torchvision.datasets class a user can download with
    coop: bool = False  # one of the 11 CoOp datasets (the paper's mean)
    notes: str = ""
    photo_template: str = ""  # the paper's one prompt, '{}' for the class name
    cupl_questions: tuple[
        str, ...
    ] = ()  # what an LLM is asked per class ({class}, {article}; cupl/questions.py)

    def __post_init__(self) -> None:
        if self.photo_template.count("{}") != 1 or not self.cupl_questions:
            raise ValueError(
                f"dataset {self.id!r} needs a photo template with one '{{}}' and a CuPL question set"
            )

    @property
    def paper(self) -> dict[str, float]:
        """The quoted figure of each paper row that has one for this dataset (sources: PAPER_SOURCES)."""
        return {method: nums[self.id] for method, nums in PAPER_NUMBERS.items() if self.id in nums}

    def root(self, data_root: Path) -> Path:
        return Path(data_root) / self.folder

    def needs(self) -> str:
        """What a local copy must hold, in one line."""
        if self.layout == "coop-split":
            where = f"/{self.image_dir}/" if self.image_dir else "/"
            return f"{self.folder}/{self.split_file} + images under {self.folder}{where} (CoOp)"
        if self.layout == "fgvc-variants":
            return f"{self.folder}/variants.txt, images_variant_{{train,val,test}}.txt, images/ (CoOp)"
        if self.layout == "imagenet-folders":
            return f"{self.folder}/{self.image_dir}/<wnid>/ x 1000 (class names from open_clip)"
        if self.layout == "dataset-file":
            return f"what its dataset file {self.split_file} names (class list; split file, tables or class folders)"
        return (
            f"{self.folder}/{self.split_file} + its images: `susx datasets prepare {self.id} --from DOWNLOAD`"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "cupl_questions": list(self.cupl_questions),
            "paper": self.paper,
            "paper_sources": {row: PAPER_SOURCES[row] for row in self.paper},
            "needs": self.needs(),
        }


# ---------------------------------------------------------------------------------------------------
# CuPL question sets: the SuS-X reference's question templates (vishaal27/SuS-X,
# ``utils/prompts_helper.py``). Differences: fgvc_aircraft lists its one question once (the reference
# lists it twice, i.e. it asked for twice as many answers; raise ``--llm-samples`` for the same effect)
# and trailing spaces after a final colon are dropped. Placeholders: see cupl/questions.py.

Q_IMAGENET = (
    "Describe what {article} {class} looks like",
    "How can you identify {article} {class}?",
    "What does {article} {class} look like?",
    "Describe an image from the internet of {article} {class}",
    "A caption of an image of {article} {class}:",
)
Q_OBJECTS = (
    "Describe what {article} {class} looks like",
    "What does {article} {class} look like",
    "Describe a photo of {article} {class}",
)
Q_BIRDS = (
    "Describe what {article} {class}, a species of bird, looks like",
    "What does {article} {class} look like",
    "Visually describe {article} {class}, a type of bird",
    "A caption of an image of {article} {class}, a type of bird",
    "Describe the appearance of {article} {class}",
    "What are the prominent features to identify {article} {class} bird",
)
Q_SUN397 = (
    "Describe what {article} {class} looks like",
    "How can you identify {article} {class}?",
    "Describe a photo of {article} {class}",
)
Q_SKETCH = (
    "Describe how a black and white sketch of {article} {class} looks like",
    "A black and white sketch of {article} {class}",
    "Describe a black and white sketch from the internet of {article} {class}",
)
Q_RENDITION = (
    "An art drawing of {article} {class}",
    "Artwork showing {article} {class}",
    "A cartoon {article} {class}",
    "An origami of {article} {class}",
    "A deviant art photo depicting {article} {class}",
    "An embroidery of {article} {class}",
    "A graffiti art showing {article} {class}",
    "A painting of {article} {class}",
    "A sculpture of {article} {class}",
    "A black and white sketch of {article} {class}",
    "A toy {article} {class}",
    "A videogame of {article} {class}",
)
Q_COUNTRY = (
    "Visually describe what {class} looks like",
    "What does the landscape of {class} look like",
    "Describe a photo taken in {class}",
    "How does a typical photo taken in {class} look like",
)
Q_PETS = (
    "Describe what {article} {class} pet looks like",
    "Visually describe {article} {class}, a type of pet",
)
Q_CARS = (
    "How can you identify {article} {class}",
    "Description of {article} {class}, a type of car",
    "A caption of a photo of {article} {class}:",
    "What are the primary characteristics of {article} {class}?",
    "Description of the exterior of {article} {class}",
    "What are the identifying characteristics of {article} {class}, a type of car?",
    "Describe an image from the internet of {article} {class}",
    "What does {article} {class} look like?",
    "Describe what {article} {class}, a type of car, looks like",
)
Q_FLOWERS = (
    "What does {article} {class} flower look like",
    "Describe the appearance of {article} {class}",
    "A caption of an image of {article} {class}",
    "Visually describe {article} {class}, a type of flower",
)
Q_FOOD = (
    "Describe what {article} {class} looks like",
    "Visually describe {article} {class}",
    "How can you tell that the food in this photo is {article} {class}?",
)
Q_AIRCRAFT = ("Describe {article} {class} aircraft",)
Q_TEXTURES = (
    "What does {article} {class} material look like?",
    "What does {article} {class} surface look like?",
    "What does {article} {class} texture look like?",
    "What does {article} {class} object look like?",
    "What does {article} {class} thing look like?",
    "What does {article} {class} pattern look like?",
)
Q_SATELLITE = (
    "Describe an aerial satellite view of {article} {class}",
    "How does a satellite photo of {article} {class} look like",
    "Visually describe a centered satellite view of {article} {class}",
)
Q_ACTIONS = (
    "What does a person doing {class} look like",
    "Describe the process of {class}",
    "How does a person {class}",
)

# The paper's photo prompt (docs/METHOD.md). ImageNet-R has none in the reference code (it crashes); ours
# is our own choice, said in its notes.
PHOTO = DEFAULT_PHOTO


def _coop(id_: str, name: str, n: int, folder: str, split: str, images: str, **kw: Any) -> DatasetSpec:
    return DatasetSpec(id_, name, n, "coop-split", folder, split, images, coop=True, **kw)


def _own(
    id_: str, name: str, n: int, folder: str, stem: str, calibration: str = "val", **kw: Any
) -> DatasetSpec:
    return DatasetSpec(id_, name, n, "split-file", folder, f"split_susx_{stem}.json", "", calibration, **kw)


DATASETS: dict[str, DatasetSpec] = {
    s.id: s
    for s in [
        DatasetSpec(
            "imagenet",
            "ImageNet",
            1000,
            "imagenet-folders",
            "imagenet",
            None,
            "val",
            "test",
            "test",
            coop=True,
            notes="the 50,000 validation images are the test set; the paper also calibrated on them",
            photo_template=PHOTO,
            cupl_questions=Q_IMAGENET,
        ),
        DatasetSpec(
            "imagenet-sketch",
            "ImageNet-Sketch",
            1000,
            "imagenet-folders",
            "imagenet-sketch",
            None,
            "sketch",
            "test",
            "test",
            notes="test set only; the paper calibrated on it",
            photo_template="A black and white pencil sketch of a {}.",
            cupl_questions=Q_SKETCH,
        ),
        _own(
            "imagenet-r",
            "ImageNet-R",
            200,
            "imagenet-r",
            "ImageNetR",
            "test",
            notes="200 ImageNet classes named by susx's ImageNet names; test set only; the paper calibrated on "
            "it; our own photo template",
            photo_template="An art rendition of a {}.",
            cupl_questions=Q_RENDITION,
        ),
        _own(
            "cifar10",
            "CIFAR-10",
            10,
            "cifar10",
            "CIFAR10",
            "test",
            torchvision="CIFAR10",
            notes="the paper calibrated on the test set; images written out of the pickles as PNG",
            photo_template=PHOTO,
            cupl_questions=Q_IMAGENET,
        ),
        _own(
            "cifar100",
            "CIFAR-100",
            100,
            "cifar100",
            "CIFAR100",
            "test",
            torchvision="CIFAR100",
            notes="the paper calibrated on the test set; fine label names, underscores to spaces",
            photo_template=PHOTO,
            cupl_questions=Q_IMAGENET,
        ),
        _coop(
            "caltech101",
            "Caltech101",
            100,
            "caltech-101",
            "split_zhou_Caltech101.json",
            "101_ObjectCategories",
            photo_template=PHOTO,
            cupl_questions=Q_OBJECTS,
        ),
        _own(
            "caltech256",
            "Caltech256",
            256,
            "caltech256",
            "Caltech256",
            torchvision="Caltech256",
            notes="257.clutter left out; names: number prefix and '-101' dropped, '-' and '_' to spaces; "
            "seeded split 0.5/0.2/0.3 unless --split-file (the authors')",
            photo_template=PHOTO,
            cupl_questions=Q_OBJECTS,
        ),
        _coop(
            "stanford_cars",
            "Stanford Cars",
            196,
            "stanford_cars",
            "split_zhou_StanfordCars.json",
            "",
            photo_template="A photo of a {} car.",
            cupl_questions=Q_CARS,
        ),
        _coop(
            "flowers102",
            "Flowers102",
            102,
            "oxford_flowers",
            "split_zhou_OxfordFlowers.json",
            "jpg",
            photo_template="A photo of a {}, a type of flower.",
            cupl_questions=Q_FLOWERS,
        ),
        _coop(
            "food101",
            "Food101",
            101,
            "food-101",
            "split_zhou_Food101.json",
            "images",
            photo_template="A photo of a {}, a type of food.",
            cupl_questions=Q_FOOD,
        ),
        DatasetSpec(
            "fgvc_aircraft",
            "FGVC Aircraft",
            100,
            "fgvc-variants",
            "fgvc_aircraft",
            None,
            "images",
            coop=True,
            notes="CoOp reads variants.txt and images_variant_{train,val,test}.txt, not a split_zhou file",
            photo_template="A photo of a {}, a type of aircraft",
            cupl_questions=Q_AIRCRAFT,
        ),
        _coop(
            "sun397",
            "SUN397",
            397,
            "sun397",
            "split_zhou_SUN397.json",
            "SUN397",
            photo_template=PHOTO,
            cupl_questions=Q_SUN397,
        ),
        _coop(
            "dtd",
            "DTD",
            47,
            "dtd",
            "split_zhou_DescribableTextures.json",
            "images",
            photo_template="{} texture.",
            cupl_questions=Q_TEXTURES,
        ),
        _coop(
            "eurosat",
            "EuroSAT",
            10,
            "eurosat",
            "split_zhou_EuroSAT.json",
            "2750",
            photo_template="A centered satellite photo of {}.",
            cupl_questions=Q_SATELLITE,
        ),
        _coop(
            "ucf101",
            "UCF101",
            101,
            "ucf101",
            "split_zhou_UCF101.json",
            "UCF-101-midframes",
            photo_template="A photo of a person doing {}.",
            cupl_questions=Q_ACTIONS,
        ),
        _coop(
            "oxford_pets",
            "Oxford Pets",
            37,
            "oxford_pets",
            "split_zhou_OxfordPets.json",
            "images",
            photo_template="A photo of a pet {}.",
            cupl_questions=Q_PETS,
        ),
        _own(
            "birdsnap",
            "Birdsnap",
            500,
            "birdsnap",
            "Birdsnap",
            notes="images are downloaded from URLs; many are gone, so local copies differ (prepare lists the "
            "missing ones); common names; test_images.txt + seeded val 0.2 of the rest unless --split-file",
            photo_template="A photo of a {}, a type of bird.",
            cupl_questions=Q_BIRDS,
        ),
        _own(
            "cub",
            "CUB",
            200,
            "cub",
            "CUB",
            notes="names: number prefix dropped, underscores to spaces; official test set, seeded val 0.2 of "
            "the official train set unless --split-file (the authors')",
            photo_template="A photo of a {}, a type of bird.",
            cupl_questions=Q_BIRDS,
        ),
        _own(
            "country211",
            "Country211",
            211,
            "country211",
            "Country211",
            torchvision="Country211",
            notes="ISO codes named from data/country_names.json; official train/valid/test",
            photo_template="A photo I took in {}",
            cupl_questions=Q_COUNTRY,
        ),
    ]
}


def get(dataset: str) -> DatasetSpec:
    key = dataset.lower().replace(" ", "_")
    aliases = {
        "imagenet_sketch": "imagenet-sketch",
        "imagenet_r": "imagenet-r",
        "pets": "oxford_pets",
        "cars": "stanford_cars",
        "aircraft": "fgvc_aircraft",
        "flowers": "flowers102",
        "caltech": "caltech101",
    }
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise SusxError(
            f"unknown dataset {dataset!r}", hint=f"use one of {', '.join(DATASETS)} (susx datasets list)"
        )
    return DATASETS[key]


# Names that stand for several datasets wherever a dataset is named (`eval -d coop11`): the paper's 11 CoOp
# datasets and all 19 it reports.
GROUPS: dict[str, tuple[str, ...]] = {
    "coop11": tuple(d for d, spec in DATASETS.items() if spec.coop),
    "paper19": tuple(DATASETS),
}


def expand_groups(values: list[str]) -> list[str]:
    """Dataset values with each group name replaced by its datasets, in order."""
    return [d for v in values for d in GROUPS.get(v, (v,))]


def resolve(value: str) -> DatasetSpec:
    """A registered dataset by id, or a user's dataset file (``datasets/own.py``) by path."""
    from susx_cli.datasets import own

    return own.load_spec(Path(value)) if own.is_dataset_file(value) else get(value)


# ---------------------------------------------------------------------------------------------------
# Local copies: read the split rows, check completeness


@dataclass
class LocalSplits:
    """A dataset's local copy as CoOp rows: ``splits[name] = [[relative_path, label, classname], ...]``."""

    spec: DatasetSpec
    root: Path  # the dataset folder
    image_root: Path  # the rows' paths start here
    classes: list[str]
    splits: dict[str, list[list[Any]]]
    source_file: Path | None  # the split file read, when there is one
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fail(spec: DatasetSpec, root: Path, what: str) -> SusxError:
    return SusxError(f"{spec.id}: {what} under {root}", hint=f"{spec.name} needs {spec.needs()}")


def load_local(spec: DatasetSpec, data_root: Path | None) -> LocalSplits:
    """Read a local copy's splits (no image checks); SusxError naming what is missing for a wrong layout."""
    from susx_cli.artifacts.common import read_json
    from susx_cli.classnames import classes_from_split

    if spec.layout == "dataset-file":
        from susx_cli.datasets import own

        return own.load_local(spec)
    if data_root is None:
        raise SusxError(
            f"{spec.id} needs --data-root ROOT holding one folder per dataset",
            hint=f"{spec.name} needs {spec.needs()}",
        )
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise SusxError(
            f"data root {data_root} does not exist",
            hint="pass --data-root ROOT holding one folder per dataset",
        )
    root = spec.root(data_root)
    if not root.is_dir():
        raise _fail(spec, data_root, f"folder {spec.folder}/ is missing")
    image_root = root / spec.image_dir if spec.image_dir else root
    if spec.layout in ("coop-split", "split-file"):
        if spec.split_file is None:
            raise ValueError(f"dataset {spec.id!r} has layout {spec.layout} but no split file")
        path = root / spec.split_file
        if not path.is_file():
            raise _fail(spec, root, f"split file {spec.split_file} is missing")
        data = read_json(path, "split file")
        if not isinstance(data, dict):
            raise _fail(spec, root, f"{spec.split_file} is not a CoOp split (an object of splits)")
        classes = classes_from_split(data, path)
        splits = {k: v for k, v in data.items() if k in ("train", "val", "test")}
        return LocalSplits(spec, root, image_root, classes, splits, path)
    if spec.layout == "fgvc-variants":
        return _load_fgvc(spec, root)
    return _load_imagenet_folders(spec, root, image_root)


def _load_fgvc(spec: DatasetSpec, root: Path) -> LocalSplits:
    variants = root / "variants.txt"
    if not variants.is_file():
        raise _fail(spec, root, "variants.txt is missing")
    classes = [ln.strip() for ln in variants.read_text(encoding="utf-8").splitlines() if ln.strip()]
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, list[list[Any]]] = {}
    for split in ("train", "val", "test"):
        path = root / f"images_variant_{split}.txt"
        if not path.is_file():
            raise _fail(spec, root, f"images_variant_{split}.txt is missing")
        rows = []
        for ln in path.read_text(encoding="utf-8").splitlines():
            if not ln.strip():
                continue
            image_id, _, variant = ln.strip().partition(" ")
            if variant not in index:
                raise _fail(
                    spec, root, f"{path.name} names variant {variant!r}, which variants.txt does not list"
                )
            rows.append([f"{image_id}.jpg", index[variant], variant])
        splits[split] = rows
    return LocalSplits(spec, root, root / spec.image_dir, classes, splits, variants)


def _load_imagenet_folders(spec: DatasetSpec, root: Path, image_root: Path) -> LocalSplits:
    """WordNet-id folders as rows; a folder's label is its id's ImageNet-1k index (``classnames.wnid_labels``)."""
    from susx_cli.classnames import is_wnid, wnid_labels
    from susx_cli.imagesets import IMAGE_EXTS

    if not image_root.is_dir():
        raise _fail(spec, root, f"folder {spec.image_dir}/ of WordNet-id class folders is missing")
    wnids = sorted(p.name for p in image_root.iterdir() if p.is_dir() and is_wnid(p.name))
    classes = class_names("imagenet")
    if not wnids:
        raise _fail(spec, image_root, "no WordNet-id class folders (n01440764/ ...)")
    labels = wnid_labels(wnids, classes, str(image_root))
    problems = []
    if len(wnids) != len(classes):
        problems.append(f"{len(wnids)} WordNet-id folders, ImageNet has {len(classes)}: classes are missing")
    rows = []
    for wnid in wnids:
        files = sorted(p for p in (image_root / wnid).iterdir() if p.suffix.lower() in IMAGE_EXTS)
        rows += [[f"{wnid}/{p.name}", labels[wnid], classes[labels[wnid]]] for p in files]
    return LocalSplits(spec, root, image_root, classes, {spec.test_split: rows}, None, problems)


def check_local(spec: DatasetSpec, data_root: Path | None, max_listed: int = 5) -> LocalSplits:
    """``load_local`` plus: every referenced image present, class list consistent. Problems are listed,
    not raised (``problems`` empty = complete)."""
    local = load_local(spec, data_root)
    if spec.layout == "split-file":
        from susx_cli.artifacts import prepared

        if prepared.is_incomplete(local.root):
            local.problems.append("`susx datasets prepare` did not finish here: re-run it to resume")
    # A dataset file needs its calibration split only for --calibration val (eval checks that).
    needed = (
        (spec.test_split,) if spec.layout == "dataset-file" else (spec.test_split, spec.calibration_split)
    )
    for split in needed:
        if not local.splits.get(split):
            local.problems.append(f"split {split!r} is missing or empty")
    missing = []
    total = 0
    for rows in local.splits.values():
        for rel, _, _ in rows:
            total += 1
            if not (local.image_root / rel).is_file():
                missing.append(str(rel))
    if missing:
        shown = ", ".join(missing[:max_listed]) + (" ..." if len(missing) > max_listed else "")
        local.problems.append(f"{len(missing)} of {total} images missing under {local.image_root}: {shown}")
    if len(local.classes) != spec.num_classes and spec.layout not in ("imagenet-folders", "dataset-file"):
        local.notes.append(
            f"{len(local.classes)} classes, the paper's {spec.name} has {spec.num_classes} (a subset?)"
        )
    used = {int(r[1]) for rows in local.splits.values() for r in rows}
    unused = [local.classes[i] for i in range(len(local.classes)) if i not in used]
    if unused:
        local.problems.append(
            f"{len(unused)} class(es) have no images in any split: {', '.join(map(repr, unused[:max_listed]))}"
        )
    local.notes.append(
        f"{total} images in splits " + ", ".join(f"{k}={len(v)}" for k, v in local.splits.items())
    )
    return local
