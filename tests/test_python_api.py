"""Issue 13 items 4 and 5: the Python API (`import susx_cli as susx`) and `prompts` without torch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env)


# ------------------------------------------------------------------ shipped class names and templates


def _generator():
    spec = importlib.util.spec_from_file_location("make_shipped_data", REPO / "tools" / "make_shipped_data.py")
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
    assert [n for i, n in enumerate(names) if i not in (744, 837)] == [n for i, n in enumerate(raw) if i not in (744, 837)]
    assert len(registry.class_names("imagenet-sketch")) == 1000


# A wrapper around the CLI that reports which heavy modules the command imported.
_CLI_WITH_MODULES = (
    "import json, sys\n"
    "from susx_cli.cli import app\n"
    "try:\n    app(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
    "heavy = [m for m in ('torch', 'open_clip', 'h5py') if m in sys.modules]\n"
    "print(json.dumps({'code': code, 'heavy': heavy}))\n"
)


def test_prompts_imagenet_openai_imports_neither_torch_nor_open_clip(tmp_path):
    out = _run_python(_CLI_WITH_MODULES, "prompts", "-d", "imagenet", "-t", "openai", "-o", "p.json", "-q", cwd=tmp_path)
    report = json.loads(out.stdout.splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, out.stderr
    data = json.loads((tmp_path / "p.json").read_text())
    assert len(data["entries"]) == 1000 and len(data["entries"][0]["template"]) == 80
    assert data["entries"][0]["template"][0] == "a bad photo of a tench."
