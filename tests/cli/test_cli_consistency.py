"""One consistent CLI: one model syntax, one meaning per short flag, parser-level choices, help examples,
the same --json shape on a skipped rerun, calibrate's printed choice, inspect's description."""

from __future__ import annotations

import pytest

from susx_cli.errors import SusxError
from susx_cli.model_spec import resolve_model, split_model
from susx_cli.stages.eval import parse_models
from tests.helpers import invoke


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ViT-B-32", ("ViT-B-32", None)),
        ("ViT-B-32:openai", ("ViT-B-32", "openai")),
        ("RN50:", ("RN50", "none")),
        ("hf-hub:org/repo", ("hf-hub:org/repo", None)),
        ("hf-hub:org/repo:v1", ("hf-hub:org/repo", "v1")),
        ("ViT-B-32:/ckpt/a:b.pt", ("ViT-B-32", "/ckpt/a:b.pt")),  # a tag (a path) may hold a colon
    ],
)
def test_split_model(spec, expected):
    assert split_model(spec) == expected


def test_resolve_model_defaults_and_disagreement():
    assert resolve_model("ViT-B-32", None, default="openai") == ("ViT-B-32", "openai")
    assert resolve_model("ViT-B-32", "laion2b", default="openai") == ("ViT-B-32", "laion2b")
    assert resolve_model("ViT-B-32:laion2b", None, default="openai") == ("ViT-B-32", "laion2b")
    assert resolve_model("ViT-B-32:laion2b", "laion2b", default="openai") == ("ViT-B-32", "laion2b")
    with pytest.raises(SusxError, match="names weights 'laion2b' but --pretrained says 'openai'"):
        resolve_model("ViT-B-32:laion2b", "openai", default="openai")


def test_eval_models_share_the_parser():
    assert parse_models(["RN50:openai", "hf-hub:org/repo", "ViT-B-32"], ["x", "y"]) == [
        ("RN50", "openai"),
        ("hf-hub:org/repo", "x"),
        ("ViT-B-32", "y"),
    ]
    assert parse_models(["RN50:openai"], ["openai"]) == [("RN50", "openai")]
    with pytest.raises(SusxError, match="but --pretrained says"):
        parse_models(["RN50:openai"], ["yfcc15m"])


def test_disagreeing_tags_are_one_line_errors(tmp_path):
    (tmp_path / "c.txt").write_text("cat\ndog\n")
    invoke("prompts", "-c", tmp_path / "c.txt", "-o", tmp_path / "p.json", "-q")
    r = invoke(
        "embed",
        tmp_path / "p.json",
        "-o",
        tmp_path / "t.h5",
        "-m",
        "susx-tiny-vit:none",
        "-p",
        "openai",
        expect=2,
    )
    assert "--model susx-tiny-vit:none names weights 'none' but --pretrained says 'openai'" in r.output
    r = invoke(
        "curate",
        tmp_path / "p.json",
        "-o",
        tmp_path / "s",
        "--source",
        "pool",
        "--pool-images",
        tmp_path,
        "-k",
        1,
        "--clip-model",
        "susx-tiny-vit:none",
        "--clip-pretrained",
        "openai",
        expect=2,
    )
    assert (
        "--clip-model susx-tiny-vit:none names weights 'none' but --clip-pretrained says 'openai'" in r.output
    )


def test_embed_takes_arch_colon_tag(tmp_path):
    (tmp_path / "c.txt").write_text("cat\ndog\n")
    invoke("prompts", "-c", tmp_path / "c.txt", "-o", tmp_path / "p.json", "-q")
    plain = invoke(
        "embed", tmp_path / "p.json", "-o", tmp_path / "a.h5", "-m", "susx-tiny-vit", "-p", "none", "--json"
    )
    tagged = invoke(
        "embed", tmp_path / "p.json", "-o", tmp_path / "a.h5", "-m", "susx-tiny-vit:none", "--json"
    )
    assert '"skipped": true' in tagged.stdout.replace(" ", "").replace('"skipped":true', '"skipped": true')
    assert plain.exit_code == tagged.exit_code == 0


def _commands():
    """(name, click command) for every command and subcommand of `susx`."""
    import typer.main

    root = typer.main.get_command(__import__("susx_cli.cli", fromlist=["app"]).app)

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", cmd

    return list(walk(root, ""))


def test_a_short_flag_means_one_thing_everywhere():
    meaning: dict[str, set[tuple[str, str]]] = {}
    for name, cmd in _commands():
        for param in cmd.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts if not o.startswith("--")):
                meaning.setdefault(short, set()).add((longs[0], name))
    clashes = {s: uses for s, uses in meaning.items() if len({long for long, _ in uses}) > 1}
    assert not clashes, f"short flags with several meanings: {clashes}"
    assert {long for long, _ in meaning["-c"]} == {"--classes"}
    assert {long for long, _ in meaning["-s"]} == {"--support"}
    assert len(meaning) >= 8  # the walk saw the commands' options


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["curate", "p.json", "-o", "s", "-s", "pool"], "-s"),
        (["curate", "p.json", "-o", "s", "--pool", "imgs"], "--pool"),
        (["predict", "t.h5", "q.h5", "-c", "cal.json"], "-c"),
        (["eval", "-d", "x", "-m", "RN50", "-c", "loo"], "-c"),
    ],
)
def test_retired_spellings_are_refused(args, flag):
    """The old spellings (curate -s/--pool, predict/eval -c for the calibration) are gone: the parser
    refuses them with the one-line error, before any stage runs."""
    r = invoke(*args, expect=2)
    line = r.stderr.strip()
    assert line.startswith("error: ") and flag in line and "\n" not in line, r.stderr


@pytest.mark.parametrize(
    ("args", "flag", "listed"),
    [
        (["calibrate", "t.h5", "s.h5", "--method", "tipx"], "--method", "'tip-x'"),
        (["calibrate", "t.h5", "s.h5", "--mode", "leave-one-out"], "--mode", "'kfold'"),
        (["predict", "t.h5", "q.h5", "--method", "zeroshot"], "--method", "'zero-shot'"),
        (["embed", "p.json", "-o", "t.h5", "--precision", "fp64"], "--precision", "'bf16'"),
        (["embed", "p.json", "-o", "t.h5", "--pool", "both"], "--pool", "'combined'"),
        (["prompts", "--pool", "both"], "--pool", "'combined'"),
        (["report", "r.json", "--metric", "top3"], "--metric", "'mean_per_class_recall'"),
        (
            ["eval", "-d", "x", "-m", "RN50", "--method", "tip-x", "--method", "tipx"],
            "--method",
            "'tip-adapter'",
        ),
        (["eval", "-d", "x", "-m", "RN50", "--calibration", "lo"], "--calibration", "'loo'"),
        (["curate", "p.json", "-o", "s", "--source", "flickr"], "--source", "'laion'"),
        (["curate", "p.json", "-o", "s", "--laion-mode", "knnn"], "--laion-mode", "'captions'"),
        (["curate", "p.json", "-o", "s", "--prompt-mode", "cupl+"], "--prompt-mode", "'photo'"),
        (["curate", "p.json", "-o", "s", "--resize-mode", "crop"], "--resize-mode", "'center_crop'"),
        (["curate", "p.json", "-o", "s", "--distributor", "dask"], "--distributor", "'pyspark'"),
        (["curate", "p.json", "-o", "s", "--download-format", "tar"], "--download-format", "'webdataset'"),
        (["curate", "p.json", "-o", "s", "--pool-search", "annoy"], "--pool-search", "'faiss'"),
        (["curate", "p.json", "-o", "s", "--preset", "sd3"], "--preset", "'sdxl-turbo'"),
    ],
)
def test_fixed_choices_are_refused_by_the_parser_with_the_list(args, flag, listed):
    r = invoke(*args, expect=2)
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: "), line  # one line, as every refusal
    assert f"Invalid value for '{flag}'" in line and listed in line, line


def test_command_choices_match_the_stages():
    from susx_cli.commands._common import CALIBRATION_MODES
    from susx_cli.method import registry
    from susx_cli.stages import eval

    assert set(CALIBRATION_MODES) == set(registry.MODES) == set(eval.CALIBRATIONS)


def _keys(value):
    """The nested key structure of a JSON value (dict keys recursively; a list by its first item)."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list) and value:
        return [_keys(value[0])]
    return None


def test_calibrate_prints_its_choice_and_json_keeps_its_shape_when_skipped(tmp_path, monkeypatch):
    import json

    from tests.helpers import build_method_workspace

    monkeypatch.chdir(build_method_workspace(tmp_path, ["zebra", "apple", "mango"]))
    args = [
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "cal.json",
        "--alpha-grid",
        "1,10",
        "--beta-grid",
        "1,5",
        "--gamma-grid",
        "0,1",
        "--json",
    ]
    ran, skipped = invoke(*args), invoke(*args)
    first, second = json.loads(ran.stdout), json.loads(skipped.stdout)
    assert not first["skipped"] and second["skipped"]
    assert _keys(first) == _keys(second)
    assert {k: v for k, v in first["summary"].items() if k != "configurations_per_second"} == {
        k: v for k, v in second["summary"].items() if k != "configurations_per_second"
    }
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert cal["objective"]["value"] == cal["objective"]["correct"] / cal["objective"]["queries"]
    assert first["summary"]["top1"] == 100 * cal["objective"]["value"]
    table = invoke(*args[:-1]).stderr  # the table on stderr, the path alone on stdout
    assert "alpha" in table and "gamma" in table and "top1 (%)" in table
    assert f"{100 * cal['objective']['value']:.2f}" in table


def test_inspect_describes_in_words_and_json_only_on_request(tmp_path, monkeypatch):
    import json

    (tmp_path / "c.txt").write_text("cat\ndog\n")
    invoke("prompts", "-c", tmp_path / "c.txt", "-o", tmp_path / "p.json", "-q")
    words = invoke("inspect", tmp_path / "p.json").stdout
    assert "kind: susx.prompts" in words and not words.lstrip().startswith("{")
    assert json.loads(invoke("inspect", tmp_path / "p.json", "--json").stdout)["kind"] == "susx.prompts"


def test_every_command_help_ends_with_examples():
    for name, cmd in _commands():
        text = cmd.epilog or cmd.help or ""
        assert "Examples:" in text and text.count("susx ") >= 2, name


def test_command_line_mistakes_are_one_line_errors():
    for args, needle in (
        (["merge", "x"], "Missing option '--num-shards'"),
        (["curate", "p.json", "--nope"], "No such option: --nope"),
    ):
        line = invoke(*args, expect=2).stderr.strip()
        assert line.startswith("error: ") and len(line.splitlines()) == 1 and needle in line, line
        assert "--help` lists the options" in line
    assert "Usage:" in invoke(expect=2).stdout  # `susx` alone still shows the help (exit 2, as before)


def test_no_module_reaches_into_private_typer_or_click_names():
    """typer's own copy of click (``typer._click``) exists only in newer releases; the floor in
    pyproject.toml is older, so the code uses the names typer exports."""
    import re
    from pathlib import Path

    import susx_cli

    root = Path(susx_cli.__file__).parent
    private = re.compile(r"^\s*(from|import)\s+typer\._", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if private.search(p.read_text())]
    assert not offenders, offenders
    assert any(root.rglob("cli.py"))  # the walk saw the sources


def test_text_embedding_uses_the_batch_size_given(tmp_path, monkeypatch):
    """`embed prompts.json -b 3` sends the texts through the model 3 at a time (no silent minimum)."""
    from susx_cli.stages import embed as embed_stage
    from tests.helpers import TINY

    sizes: list[int] = []
    real = embed_stage.class_text_weights

    def recording(encoder, texts, batch_size):
        sizes.append(batch_size)
        return real(encoder, texts, batch_size)

    monkeypatch.setattr(embed_stage, "class_text_weights", recording)
    (tmp_path / "c.txt").write_text("cat\ndog\n")
    invoke("prompts", "-c", tmp_path / "c.txt", "--templates", "ensemble", "-o", tmp_path / "p.json", "-q")
    invoke("embed", tmp_path / "p.json", "-o", tmp_path / "t.h5", *TINY, "-b", 3, "-q")
    assert sizes == [3]


def test_the_version_is_written_once_and_read_from_its_module():
    """Modules read the version from susx_cli._version, never from the package root (an import cycle)."""
    import re
    from pathlib import Path

    import susx_cli
    from susx_cli._version import __version__

    root = Path(susx_cli.__file__).parent
    from_root = re.compile(r"^\s*from susx_cli import [^\n]*__version__", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if from_root.search(p.read_text())]
    assert not offenders, offenders
    assert susx_cli.__version__ == __version__
    literal = re.compile(r"__version__ = \"")
    assert [p.name for p in root.rglob("*.py") if literal.search(p.read_text())] == ["_version.py"]
