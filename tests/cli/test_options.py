"""One options object per stage: every command option is the Python API's keyword of the same name with
the same default, `-m ARCH:TAG` is split by the options object, and bad values fail alike in both."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer

from susx_cli import api
from susx_cli.cli import app
from susx_cli.errors import SusxError
from susx_cli.options import REQUIRED
from susx_cli.stages import options as stage_options

# Options that shape what the command prints, not what the stage does: the API has no counterpart.
PRESENTATION = {"quiet", "as_json"}
# Command groups that are no stage (listing and checking the dataset registry).
NOT_STAGES = {"datasets"}
# eval builds no options object: its command and `susx.eval` share one translation of the same
# parameters (stages/eval.eval_parameters), which the comparison below checks.
NO_OPTIONS_CLASS = {"eval"}


def _commands():
    group = typer.main.get_command(app)
    return {name: cmd for name, cmd in group.commands.items() if name not in NOT_STAGES}


def _api_defaults(name: str) -> dict[str, object]:
    """The API function's keyword defaults: its own parameters, then its options class's fields."""
    function = getattr(api, "eval" if name == "eval" else name)
    defaults = {
        p.name: p.default for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY
    }
    if name == "curate":  # the sources' options, passed on to the chosen source's options class
        from susx_cli.sources.registry import cli_params

        defaults |= {p.name: p.default for p in cli_params()}
    if name in ("calibrate", "eval"):  # the method registry's flags, by parameter name
        from susx_cli.method import registry

        for h, _ in registry.hyperparameter_flags().values():
            defaults |= {h.param: None, f"{h.param}_grid": None}
    options_class = stage_options.OPTIONS.get(name)
    if options_class is not None:
        for f in dataclasses.fields(options_class):
            if f.init:
                defaults.setdefault(f.name, f.default)
    return defaults


def _same_default(click_default: object, api_default: object) -> bool:
    if api_default is REQUIRED or api_default is inspect.Parameter.empty:
        return click_default is None  # required on both sides
    empty = (None, (), [])
    if click_default in empty and api_default in empty:  # a repeatable option left out
        return True
    return click_default == api_default


@pytest.mark.parametrize(
    "name",
    [n for n in sorted(_commands())],
)
def test_every_command_option_is_an_api_keyword_with_the_same_default(name):
    command = _commands()[name]
    defaults = _api_defaults(name)
    for param in command.params:
        if param.name in PRESENTATION:
            continue
        assert param.name in defaults, f"susx {name} {param.opts} has no API keyword {param.name}"
        assert _same_default(param.default, defaults[param.name]), (
            f"susx {name} {param.opts}: command default {param.default!r}, API {defaults[param.name]!r}"
        )


def test_every_stage_command_has_an_options_class():
    assert set(stage_options.OPTIONS) | NO_OPTIONS_CLASS == set(_commands())


def test_model_spec_is_split_by_the_options_object(tmp_path):
    options = stage_options.EmbedOptions(input="in", output=tmp_path / "o.h5", model="ViT-B-32:openai")
    assert (options.model, options.pretrained) == ("ViT-B-32", "openai")
    assert str(options.input) == "in" and options.input.__class__.__name__.endswith("Path")
    assert stage_options.EmbedOptions(input="in", output="o", model="RN50").pretrained == "openai"
    with pytest.raises(SusxError, match="names weights 'openai' but --pretrained says 'none'"):
        stage_options.EmbedOptions(input="in", output="o", model="RN50:openai", pretrained="none")


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"augment_passes": 0}, "--augment-passes must be at least 1"),
        ({"precision": "fp8"}, "--precision must be one of"),
        ({"executor": "spark"}, "--executor must be one of"),
        ({"ray_address": "127.0.0.1:1"}, "needs --executor ray"),
        ({"bogus": 1}, "unknown option"),
    ],
)
def test_embed_options_are_checked_where_they_are_built(values, needle):
    with pytest.raises(SusxError, match=needle):
        api.embed(input="in", output="o.h5", **values)


def test_options_are_frozen():
    options = stage_options.EmbedOptions(input="in", output="o")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.model = "RN50"  # type: ignore[misc]
    assert options.output is not REQUIRED


def test_the_api_takes_the_model_spec_and_the_command_options(tmp_path):
    (tmp_path / "c.txt").write_text("cat\ndog\n")
    api.prompts(classes=tmp_path / "c.txt", output=tmp_path / "p.json")
    result = api.embed(
        input=tmp_path / "p.json", output=tmp_path / "t.h5", model="susx-tiny-vit:none", verify=False
    )
    assert result.stage == "embed" and result.summary["classes"] == 2
    with pytest.raises(SusxError, match="--augment-passes apply to images"):
        api.embed(
            input=tmp_path / "p.json", output=tmp_path / "t2.h5", model="susx-tiny-vit:", augment_passes=2
        )
