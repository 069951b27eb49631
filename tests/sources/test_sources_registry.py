"""The source registry: options dataclasses, `curate` flags and help panels built from it."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from susx_cli.cli import app
from susx_cli.errors import SusxError
from susx_cli.options import cli_fields
from susx_cli.sources import registry
from tests.helpers import invoke

# Per registered source: flags that set every one of its options to a value other than its default.
SAMPLES: dict[str, list[str]] = {
    "folder": [
        "--images",
        "imgs",
        "--split",
        "train",
        "--image-root",
        "root",
        "--shots",
        "3",
        "--seed",
        "5",
        "--link",
    ],
    "sd": [
        "-k",
        "2",
        "--preset",
        "fast",
        "--sd-model",
        "some/model",
        "--revision",
        "main",
        "--steps",
        "3",
        "--guidance",
        "1.5",
        "--size",
        "64x32",
        "--scheduler",
        "ddim",
        "--precision",
        "fp32",
        "--prompt-mode",
        "cupl",
        "--seed",
        "7",
        "--batch-size",
        "2",
        "--black-retries",
        "0",
        "--device",
        "cpu",
        "--attention-slicing",
        "--vae-slicing",
        "--vae-tiling",
        "--compile",
        "--cpu-offload",
    ],
    "laion": [
        "-k",
        "2",
        "--laion-mode",
        "captions",
        "--prompt-mode",
        "cupl",
        "--candidates",
        "7",
        "--knn-url",
        "http://h/knn",
        "--index-name",
        "idx",
        "--no-knn-dedup",
        "--no-knn-safety",
        "--no-knn-violence",
        "--knn-aesthetic-weight",
        "0",
        "--metadata",
        "m.parquet",
        "--url-col",
        "u",
        "--caption-col",
        "c",
        "--synonyms",
        "syn.json",
        "--max-matches",
        "5",
        "--duckdb-threads",
        "1",
        "--duckdb-memory",
        "1GB",
        "--clip-model",
        "tiny",
        "--clip-pretrained",
        "none",
        "--device",
        "cpu",
        "--image-size",
        "64",
        "--resize-mode",
        "border",
        "--download-timeout",
        "3",
        "--download-retries",
        "0",
        "--download-processes",
        "2",
        "--download-threads",
        "4",
        "--distributor",
        "ray",
        "--download-format",
        "webdataset",
        "--knn-timeout",
        "5",
        "--max-image-bytes",
        "1000",
        "--allow-private-urls",
    ],
    "pool": [
        "--pool-images",
        "images",
        "-k",
        "2",
        "--prompt-mode",
        "cupl",
        "--candidates",
        "9",
        "--pool-features",
        "f.h5",
        "--clip-model",
        "tiny",
        "--clip-pretrained",
        "none",
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--pool-search",
        "matmul",
    ],
}


def _parse(monkeypatch, source: str, args: list[str]) -> Any:
    """The options dataclass `curate` builds from ``args`` (the factory is replaced by a recorder)."""
    options_class, _ = registry.SOURCES[source]
    seen = []

    def record(options):
        seen.append(options)
        raise SusxError("recorded")

    monkeypatch.setitem(registry.SOURCES, source, (options_class, record))
    r = invoke("curate", "p.json", "-o", "out", "--source", source, *args, expect=2)
    assert "recorded" in r.stderr, r.stderr
    return seen[0]


def _cli_args(options: Any) -> list[str]:
    """The flags that give ``options`` back (only where a field differs from its default)."""
    args: list[str] = []
    for f, cli in cli_fields(type(options)):
        value = getattr(options, f.name)
        if value == f.default:
            continue
        if isinstance(value, bool):
            on, _, off = cli.flags[0].partition("/")
            args.append(on if value else off)
        else:
            args += [cli.flag, str(value)]
    return args


def test_every_source_has_a_sample():
    assert set(SAMPLES) == set(registry.SOURCES), "add sample flags for every registered source"


@pytest.mark.parametrize("source", list(registry.SOURCES))
def test_options_dataclass_round_trips_from_the_command_line(monkeypatch, source):
    options = _parse(monkeypatch, source, SAMPLES[source])
    options_class, _ = registry.SOURCES[source]
    assert type(options) is options_class
    for f, cli in cli_fields(options_class):  # the sample sets every option, so every flag reached its field
        assert getattr(options, f.name) != f.default, (
            f"{cli.flag} did not reach {options_class.__name__}.{f.name}"
        )
    again = _parse(monkeypatch, source, _cli_args(options))
    assert again == options
    # The registry builds the same options from Python values, and its factory makes a source of them.
    given = {cli.param: getattr(options, f.name) for f, cli in cli_fields(options_class)}
    assert registry.build_options(source, given) == options


def test_sample_values_reach_the_sources():
    """Spot checks that flags land in the field they name (the round trip alone would not see a swap)."""
    from susx_cli.sources.laion import LaionSource
    from susx_cli.sources.pool import PoolOptions
    from susx_cli.sources.sd import SDOptions

    sd = registry.build_options("sd", {"per_class": 2, "sd_model": "x/y", "size": "64x32", "compile": True})
    assert isinstance(sd, SDOptions) and (sd.model, sd.width, sd.height, sd.compile) == ("x/y", 64, 32, True)
    assert sd.preset == "paper" and sd.steps == 85  # defaults from the preset, filled by the options class
    laion = LaionSource.from_options(
        registry.build_options(
            "laion",
            {
                "per_class": 3,
                "knn_dedup": False,
                "image_size": 64,
                "knn_url": "http://127.0.0.1:9/knn-service",
            },
        )
    )
    assert laion.per_class == 3 and laion.knn.deduplicate is False and laion.download.image_size == 64
    assert (
        laion.candidates == 5000 and laion.knn_url == "http://127.0.0.1:9/knn-service"
    )  # no default endpoint
    pool = registry.build_options("pool", {"pool_images": "images", "per_class": 1})
    assert isinstance(pool, PoolOptions) and pool.precision == "fp32" and pool.candidates is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--source", "sd"], "--source sd needs --per-class"),
        (["--source", "sd", "-k", "0"], "--per-class must be at least 1"),
        (["--source", "laion", "-k", "1", "--candidates", "0"], "--candidates must be at least 1"),
        (["--source", "laion", "-k", "1", "--laion-mode", "captions"], "needs --metadata"),
        (["--source", "pool", "-k", "1"], "needs --pool"),
        (["--source", "folder"], "needs --images"),
    ],
)
def test_options_are_checked_by_their_dataclass(args, needle):
    r = invoke("curate", "p.json", "-o", "out", *args, expect=2)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unknown_source_is_refused_with_the_list():
    r = invoke("curate", "p.json", "-o", "out", "--source", "flickr", expect=2)  # by the parser: a Literal
    text = r.stderr.strip()
    assert len(text.splitlines()) == 1 and "'flickr' is not one of 'folder', 'sd', 'laion', 'pool'" in text
    with pytest.raises(SusxError, match="unknown source 'flickr'"):  # and by the registry for API callers
        registry.lookup("flickr")


def test_options_of_other_sources_are_refused_by_name(tmp_path):
    r = invoke(
        "curate",
        "p.json",
        "-o",
        tmp_path / "out",
        "--images",
        "imgs",
        "--steps",
        "3",
        "--pool-images",
        "x",
        expect=2,
    )
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "--steps, --pool-images do not apply to --source folder" in line and "sd | pool" in line
    # given explicitly, even at its default value, an option of another source is still refused
    r = invoke(
        "curate", "p.json", "-o", tmp_path / "out", "--source", "laion", "-k", "1", "--seed", "0", expect=2
    )
    assert "--seed does not apply to --source laion" in r.stderr and "folder | sd" in r.stderr
    assert not (tmp_path / "out").exists()


def _panels(text: str) -> dict[str, str]:
    """Help text split into its rich panels: title -> body."""
    parts = re.split(r"╭─ (.+?) ─+╮", text)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_help_has_a_panel_per_source_with_its_options():
    result = CliRunner().invoke(app, ["curate", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0, result.output
    panels = _panels(result.output)
    assert "Options" in panels and "--source" in panels["Options"] and "--output" in panels["Options"]
    for param in registry.cli_params():
        title = registry.panel(param.sources[0]) if len(param.sources) == 1 else registry.SHARED_PANEL
        assert title in panels, f"no panel {title!r}"
        assert re.search(rf"{re.escape(param.flag)}\b", panels[title]), (
            f"{param.flag} is not in panel {title!r}"
        )
    for source in registry.SOURCES:
        assert registry.panel(source) in panels
    # a shared option says which sources it is for
    shared = panels[registry.SHARED_PANEL]
    assert "sd, laion, pool: images per class" in " ".join(shared.split())


def test_sources_declaring_one_option_differently_is_a_programming_error():
    from susx_cli.options import CliOption

    a, b = CliOption(("--n",), "a."), CliOption(("--n",), "b.")
    with pytest.raises(TypeError, match="differently"):
        registry._merge("n", [("x", a, int, 1), ("y", b, str, "1")])
    merged = registry._merge("n", [("x", a, int, 1), ("y", b, int | None, None)])
    assert merged.type == int | None and merged.default is None and merged.help == "x: a; y: b."


def test_every_source_says_how_many_images_per_class_it_wants(tmp_path):
    """`per_class` is part of the Source protocol (curate names the classes left short of it)."""
    (tmp_path / "images").mkdir()
    sources = {
        "folder": {"images": tmp_path, "shots": 4},
        "sd": {"per_class": 4},
        "laion": {"per_class": 4, "knn_url": "http://127.0.0.1:9"},
        "pool": {"pool_images": str(tmp_path / "images"), "per_class": 4},
    }
    assert set(sources) == set(registry.SOURCES)
    for name, given in sources.items():
        src = registry.make_source(name, registry.build_options(name, given))
        assert src.name == name and src.per_class == 4
        assert dataclasses.is_dataclass(src) and isinstance(src, registry.SOURCES[name][0])
