"""The Python API (`import susx_cli as susx`) and `prompts` without torch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env
    )


# ------------------------------------------------------------------ shipped class names and templates


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_shipped_data", REPO / "tools" / "make_shipped_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_lists_equal_the_installed_open_clip():
    from susx_cli import shipped

    current = _generator().from_open_clip()
    assert shipped.imagenet_classnames() == current[shipped.IMAGENET_CLASSNAMES]["names"]
    assert shipped.openai_templates() == current[shipped.OPENAI_TEMPLATES]["templates"]
    for name in (shipped.IMAGENET_CLASSNAMES, shipped.OPENAI_TEMPLATES):
        assert shipped.read(name)["open_clip_version"]  # where the copy came from


def test_imagenet_names_keep_the_two_renames_and_are_unique():
    from susx_cli import shipped
    from susx_cli.datasets import registry

    raw = shipped.imagenet_classnames()
    names = registry.class_names("imagenet")
    assert len(names) == 1000 and len(set(names)) == 1000 and len(set(raw)) == 998
    assert (names[744], names[837]) == ("projectile", "dark glasses")
    assert [n for i, n in enumerate(names) if i not in (744, 837)] == [
        n for i, n in enumerate(raw) if i not in (744, 837)
    ]
    assert len(registry.class_names("imagenet-sketch")) == 1000


# A wrapper around the CLI that reports which heavy modules the command imported.
_CLI_WITH_MODULES = (
    "import json, sys\n"
    "from susx_cli.cli import app\n"
    "try:\n    app(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
    "heavy = [m for m in ('torch', 'open_clip', 'h5py') if m in sys.modules]\n"
    "print(json.dumps({'code': code, 'heavy': heavy}))\n"
)


@pytest.mark.slow
def test_prompts_imagenet_openai_imports_neither_torch_nor_open_clip(tmp_path):
    out = _run_python(
        _CLI_WITH_MODULES, "prompts", "-d", "imagenet", "-t", "openai", "-o", "p.json", "-q", cwd=tmp_path
    )
    report = json.loads(out.stdout.splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, out.stderr
    data = json.loads((tmp_path / "p.json").read_text())
    assert len(data["entries"]) == 1000 and len(data["entries"][0]["template"]) == 80
    assert data["entries"][0]["template"][0] == "a bad photo of a tench."


# ------------------------------------------------------------------ the Python API


def test_api_examples_run():
    """The module docstring's examples: prompts -> curate folder -> embed -> calibrate -> predict -> load."""
    import doctest

    from susx_cli import api

    failed, attempted = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert attempted >= 20 and failed == 0


@pytest.mark.slow
def test_import_is_light_until_a_stage_runs(tmp_path):
    code = (
        "import json, sys\n"
        "import susx_cli as susx\n"
        "after_import = [m for m in ('torch', 'open_clip', 'h5py') if m in sys.modules]\n"
        "names = ['prompts', 'curate', 'embed', 'calibrate', 'predict', 'eval', 'load', 'verbose']\n"
        "found = [n for n in names if callable(getattr(susx, n))]\n"
        "after_access = [m for m in ('torch', 'open_clip', 'h5py') if m in sys.modules]\n"
        "print(json.dumps({'import': after_import, 'access': after_access, 'found': found, 'dir': 'load' in dir(susx)}))\n"
    )
    out = _run_python(code, cwd=tmp_path)
    report = json.loads(out.stdout.splitlines()[-1])
    assert report == {
        "import": [],
        "access": [],
        "dir": True,
        "found": ["prompts", "curate", "embed", "calibrate", "predict", "eval", "load", "verbose"],
    }, out.stderr
    missing = _run_python("import susx_cli as s; s.nothing_here", cwd=tmp_path)
    assert missing.returncode == 1 and "has no attribute 'nothing_here'" in missing.stderr


def _tiny_support(root: Path):
    """prompts.json for two classes and a support set of two real shots each, through the API."""
    import susx_cli as susx
    from tests.helpers import make_class_folders

    (root / "classes.txt").write_text("cat\ndog\n")
    make_class_folders(root / "shots", ["cat", "dog"], 3)
    susx.prompts(classes=str(root / "classes.txt"), output=str(root / "p.json"))
    return susx.curate(
        prompts=root / "p.json",
        output=str(root / "sup"),
        source="folder",
        images=str(root / "shots"),
        shots=2,
    )


def test_stages_are_silent_unless_asked(tmp_path, capsys):
    import susx_cli as susx
    from susx_cli import progress

    result = _tiny_support(tmp_path)
    assert result.summary["per_class"] == [2, 2] and not result.skipped
    assert capsys.readouterr() == ("", "")
    with susx.verbose():
        again = susx.curate(
            prompts=tmp_path / "p.json", output=tmp_path / "sup", images=tmp_path / "shots", shots=2
        )
    assert again.skipped and "up to date" in capsys.readouterr().err
    assert progress.current() is progress.NULL  # the block restored the silent default
    susx.verbose()
    try:
        susx.curate(prompts=tmp_path / "p.json", output=tmp_path / "sup", images=tmp_path / "shots", shots=2)
        assert "up to date" in capsys.readouterr().err
    finally:
        susx.verbose(False)
    susx.curate(prompts=tmp_path / "p.json", output=tmp_path / "sup", images=tmp_path / "shots", shots=2)
    assert capsys.readouterr() == ("", "")


def test_load_dispatches_on_the_recorded_kind(tmp_path):
    import susx_cli as susx
    from susx_cli.artifacts.prompts import Prompts
    from susx_cli.artifacts.support import SupportSet

    _tiny_support(tmp_path)
    assert isinstance(susx.load(tmp_path / "p.json"), Prompts)
    support = susx.load(str(tmp_path / "sup"))
    assert (
        isinstance(support, SupportSet) and support.classes == ["cat", "dog"] and support.counts() == [2, 2]
    )
    # A result file is read as its record; renamed, it is still found by its kind, not its name.
    from susx_cli.artifacts.results import RESULT, RESULT_SCHEMA_VERSION

    record = {
        "kind": RESULT,
        "schema_version": RESULT_SCHEMA_VERSION,
        "dataset": "cifar10",
        "model": "m",
        "method": "zero-shot",
        "metrics": {"top1": 50.0},
        "config": {},
        "config_key": "k",
        "zero_shot_protocol": "x",
    }
    (tmp_path / "run.data").write_text(json.dumps(record))
    assert susx.load(tmp_path / "run.data")["metrics"] == {"top1": 50.0}


def test_load_refuses_what_is_not_an_artifact(tmp_path):
    import h5py
    import pytest

    import susx_cli as susx

    (tmp_path / "other.json").write_text(json.dumps({"kind": "someone.else"}))
    (tmp_path / "list.json").write_text("[1, 2]")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = [1, 2, 3]
    (tmp_path / "folder").mkdir()
    cases = {
        "other.json": "not a susx artifact",
        "list.json": "not a susx artifact",
        "plain.h5": "HDF5 file but not a susx",
        "folder": "not a susx support set",
        "absent.h5": "does not exist",
    }
    for name, message in cases.items():
        with pytest.raises(susx.SusxError, match=message):
            susx.load(tmp_path / name)


def test_curate_options_are_checked_by_the_source_registry(tmp_path):
    import pytest

    import susx_cli as susx

    _tiny_support(tmp_path)
    with pytest.raises(susx.SusxError, match="--per-class does not apply to --source folder") as err:
        susx.curate(
            prompts=tmp_path / "p.json",
            output=tmp_path / "x",
            source="folder",
            images=tmp_path / "shots",
            per_class=3,
        )
    assert "sd" in err.value.hint
    with pytest.raises(susx.SusxError, match="--source must be one of folder, sd, laion, pool, got 'flickr'"):
        susx.curate(prompts=tmp_path / "p.json", output=tmp_path / "x", source="flickr")
    with pytest.raises(susx.SusxError, match="needs --images"):
        susx.curate(prompts=tmp_path / "p.json", output=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_stage_options_beyond_the_named_ones_are_checked(tmp_path):
    import pytest

    import susx_cli as susx

    with pytest.raises(susx.SusxError, match="unknown option") as err:
        susx.calibrate(text="t.h5", support="s.h5", output="c.json", fold_sed=1)
    assert "fold_seed" in err.value.hint
    with pytest.raises(susx.SusxError, match="unknown option"):
        susx.predict(text="t.h5", query="q.h5", output="p.h5", calibration_path="c.json")
    with pytest.raises(susx.SusxError, match="unknown option"):
        susx.eval(dataset="cifar10", data_root=tmp_path, model="RN50", bogus=1)


def test_eval_takes_the_command_line_options_by_name(tmp_path):
    """`susx.eval` and `susx eval` share one translation of the same options (a dry run plans alike)."""
    import susx_cli as susx
    from tests.helpers import TINY, invoke
    from tests.stages.test_eval import make_cars_root

    data = make_cars_root(tmp_path / "data")
    model = f"{TINY[1]}:{TINY[3]}"
    api = susx.eval(
        dataset="stanford_cars",
        data_root=data,
        model=model,
        method=["zero-shot", "tip-x"],
        support="folder-shots:2",
        seeds="0,1",
        work_dir=tmp_path / "w",
        dry_run=True,
        alpha_grid="1,2",
    )
    cli = invoke(
        "eval",
        "-d",
        "stanford_cars",
        "--data-root",
        data,
        "-m",
        model,
        "--method",
        "zero-shot",
        "--method",
        "tip-x",
        "-s",
        "folder-shots:2",
        "--seeds",
        "0,1",
        "--work-dir",
        tmp_path / "w",
        "--dry-run",
        "--alpha-grid",
        "1,2",
        "--json",
    )
    planned = [(r["method"], r.get("seed"), r["status"]) for r in api.rows]
    assert planned == [(r["method"], r.get("seed"), r["status"]) for r in json.loads(cli.stdout)["results"]]
    assert len(planned) == 3 and not (tmp_path / "w").exists()
