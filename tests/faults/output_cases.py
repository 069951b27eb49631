"""Generated fault cases for every output path option of every command (see ``options.output_paths``).

For each option tagged as an output, in a copy of the fault workspace (``workspace.build_workspace`` plus
``extend_workspace``), the option is pointed at:

- ``foreign-file``: an existing file of the user's (``mine/thesis.tex``);
- ``foreign-folder``: an existing folder of the user's (``mine/``);
- ``input``: an input of the same command; ``inside-input``: a path inside an input folder;
- ``other-output``: the path another output option of the same command is also given;
- ``link-foreign``: a symlink to the user's file;
- ``read-only``: a path in a read-only tmpfs; ``full-disk``: a path in a tmpfs filled to the last byte;
- ``parent-file``: a path whose parent is a file.

A path the command reads and then writes (``merge TARGET``, ``curate --pool-features``) gets the foreign
file and folder, link and parent-file cases (``input_output_cases``).

Each case must end in one ``error:`` line naming the path (or, where writing there is right, a correct
result), without a traceback, with every file that was there before byte-identical. The command each
case runs is ``BASES[(command, flag)]``: the smallest run of that command that succeeds in the workspace.
An output option without a base fails ``test_every_output_option_has_a_base``, so an option added to the
CLI is covered the day it is added. The tmpfs cases need root (mount); they are left out otherwise.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from susx_cli.commands._common import INPUT_OUTPUT
from tests.faults.harness import Case, Outcome, run_case
from tests.faults.options import output_paths, walk
from tests.helpers import TINY, invoke

SMALL_GRID = ("--alpha-grid", "0.5,2", "--beta-grid", "1,5", "--gamma-grid", "0.1,1")
LLM_KEY_ENV = "SUSX_FAULTS_LLM_KEY"
LLM_KEY = "sk-test-key"  # what the fake LLM of tests/test_cupl_llm accepts
RESULTS = "results"
RESULT_FILE = f"{RESULTS}/zero-shot.json"  # eval's one result, renamed: its own name carries a run hash


@dataclass(frozen=True)
class Base:
    """A run of one command that succeeds in the workspace: its arguments without the output options,
    the path each output option gets, the command's file and folder inputs, and which outputs are
    folders (for folder outputs, writing into a folder of the user's may be right)."""

    args: tuple[str, ...]
    outputs: dict[str, str]
    inputs: tuple[str, ...] = ()
    input_folder: str | None = None
    folders: frozenset[str] = frozenset()
    into_user_folder_ok: bool = False  # whether writing inside an existing user folder is a correct result


def eval_args(method: str = "zero-shot") -> tuple[str, ...]:
    """An eval run of ``method`` on the miniature dataset (``extend_workspace``), without its output folders."""
    return (
        "eval",
        "--dataset",
        "stanford_cars",
        "--data-root",
        "cars",
        "--model",
        f"{TINY[1]}:{TINY[3]}",
        "--method",
        method,
        "--workers",
        "0",
    )


def bases() -> dict[tuple[tuple[str, ...], str], Base]:
    """``(command, flag) -> Base``. The --llm-cache base asks the fake LLM whose URL the case's
    environment gives (``OPENAI_BASE_URL``, see ``generated_cases``)."""
    calibrate = Base(
        ("calibrate", "text.h5", "sup.h5", "--mode", "loo", *SMALL_GRID),
        {"--output": "new-cal.json", "--heatmap": "new-heat.png"},
        inputs=("text.h5",),
    )
    report = Base(
        ("report", RESULTS),
        {"--output": "new.md", "--long": "new-long.csv", "--chart": "new-chart.png"},
        inputs=(RESULT_FILE,),
        input_folder=RESULTS,
    )
    evaluate = Base(
        eval_args(),
        {"--work-dir": "new-work", "--results-dir": "new-results"},
        input_folder="cars",
        folders=frozenset({"--work-dir", "--results-dir"}),
        into_user_folder_ok=True,
    )
    prompts = Base(("prompts", "-c", "classes.txt"), {"--output": "new-p.json"}, inputs=("classes.txt",))
    table = {
        (("calibrate",), "--output"): calibrate,
        (("calibrate",), "--heatmap"): calibrate,
        (("curate",), "--output"): Base(
            ("curate", "p.json", "--images", "shots"),
            {"--output": "new-sup"},
            inputs=("p.json",),
            input_folder="shots",
            folders=frozenset({"--output"}),
        ),
        (("demo",), "--output"): Base(("demo",), {"--output": "new-demo"}, folders=frozenset({"--output"})),
        (("embed",), "--output"): Base(
            ("embed", "p.json", *TINY), {"--output": "new-text.h5"}, inputs=("p.json",)
        ),
        (("eval",), "--work-dir"): evaluate,
        (("eval",), "--results-dir"): evaluate,
        (("export",), "--output"): Base(("export", "pred.h5"), {"--output": "new.csv"}, inputs=("pred.h5",)),
        (("inspect",), "--contact-sheet"): Base(
            ("inspect", "sup"), {"--contact-sheet": "new-sheet.png"}, inputs=("sup",), input_folder="sup"
        ),
        (("inspect",), "--confusion"): Base(
            ("inspect", "pred.h5"), {"--confusion": "new-confusion.png"}, inputs=("pred.h5",)
        ),
        (("predict",), "--output"): Base(
            ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json"),
            {"--output": "new-pred.h5"},
            inputs=("test.h5",),
        ),
        (("prompts",), "--output"): prompts,
        (("report",), "--output"): report,
        (("datasets", "prepare"), "--output"): Base(
            ("datasets", "prepare", "imagenet-r", "--from", "inr-download"),
            {"--output": "new-data"},
            input_folder="inr-download",
            folders=frozenset({"--output"}),
            into_user_folder_ok=True,  # -o is a data root: the dataset goes into its own folder under it
        ),
        (("report",), "--long"): report,
        (("report",), "--chart"): report,
    }
    table[(("prompts",), "--llm-cache")] = Base(
        (
            "prompts",
            "-c",
            "classes.txt",
            "--llm",
            "--llm-model",
            "fake-llm",
            "--llm-key-env",
            LLM_KEY_ENV,
            "--llm-questions",
            "generic",
            "--llm-samples",
            "1",
            "--llm-concurrency",
            "1",
        ),
        {"--output": "new-p.json", "--llm-cache": "new-cache.jsonl"},
        inputs=("classes.txt",),
    )
    return table


# ------------------------------------------------------------------------------------------ the workspace


def extend_workspace(root: Path) -> Path:
    """Add what the bases need beyond the fault workspace: a miniature dataset root (``cars/``) and the
    result files of one eval run (``results/``)."""
    from susx_cli.classnames import imagenet_wnids
    from tests.stages.test_eval import make_cars_root

    make_cars_root(root / "cars")
    for wnid in imagenet_wnids()[:2]:  # a miniature ImageNet-R download: WordNet-id folders
        folder = root / "inr-download" / "imagenet-r" / wnid
        folder.mkdir(parents=True)
        (folder / "art_0.jpg").write_bytes(b"\xff\xd8 not decoded by prepare")
    old = Path.cwd()
    os.chdir(root)
    try:
        invoke(*eval_args(), "--work-dir", ".eval-work", "--results-dir", RESULTS)
        (made,) = Path(RESULTS).glob("stanford_cars__*zero-shot*.json")
        made.rename(RESULT_FILE)
    finally:
        os.chdir(old)
    return root


# ------------------------------------------------------------------------------------------ tmpfs mounts


def can_mount() -> bool:
    return (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and subprocess.run(["which", "mount"], capture_output=True).returncode == 0
    )


def _mount(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True
    )


def _fill(folder: Path) -> None:
    """Write files until the file system has no byte left."""
    for name, block in (("filler", 1 << 16), ("filler-small", 512)):
        with open(folder / name, "wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * block)


def unmount_all(ws: Path) -> None:
    for name in ("ro-mount", "full-mount"):
        if os.path.ismount(ws / name):
            subprocess.run(["umount", "-l", str(ws / name)], check=False)


# -------------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class OutputCase:
    """One generated case: the harness case, and whether a correct run (exit 0, output written) is an
    acceptable outcome besides the refusal."""

    case: Case
    output: str  # the path the tested option gets (relative to the workspace)
    may_succeed: bool = False
    needs_root: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _argv(base: Base, flag: str, value: str, extra: dict[str, str] | None = None) -> tuple[str, ...]:
    """The base run with every output option of the base, the tested one (and ``extra``) replaced."""
    given = {**base.outputs, **(extra or {}), flag: value}
    return (*base.args, *(item for f, v in given.items() for item in ((f, v) if f.startswith("-") else (v,))))


def _link(name: str, target: str):
    def setup(ws: Path) -> None:
        (ws / name).symlink_to(target)

    return setup


def _setup_mount(kind: str):
    def setup(ws: Path) -> None:
        if kind == "read-only":
            _mount(ws / "ro-mount", "size=1m,ro")
        else:
            _mount(ws / "full-mount", "size=256k")
            _fill(ws / "full-mount")

    return setup


def cases_for(command: tuple[str, ...], flag: str, base: Base, env: dict[str, str]) -> Iterator[OutputCase]:
    """The generated cases of one output option."""
    cid = f"{'-'.join(command)}{flag}"
    folder = flag in base.folders

    def make(kind, value, message, *, setup=None, extra=None, may_succeed=False, root=False):
        case = Case(f"{cid}:{kind}", _argv(base, flag, value, extra), 2, message, setup, timeout_s=300)
        return OutputCase(case, value, may_succeed, root, env)

    yield make("foreign-file", "mine/thesis.tex", "thesis.tex")
    yield make("foreign-folder", "mine", "mine", may_succeed=folder and base.into_user_folder_ok)
    for path in base.inputs:
        yield make("input", path, "input")
    if base.input_folder is not None:
        yield make("inside-input", f"{base.input_folder}/new-out", "input")
    for other in base.outputs:
        if other != flag:
            yield make(f"other-output{other}", "same-out", "both name", extra={other: "same-out"})
            break
    yield make("link-foreign", "link-out", "link-out", setup=_link("link-out", "mine/thesis.tex"))
    if folder:
        yield make(
            "link-foreign-folder",
            "link-dir",
            "link-dir",
            setup=_link("link-dir", "mine"),
            may_succeed=base.into_user_folder_ok,
        )
    yield make("parent-file", "mine/thesis.tex/new-out", "thesis.tex")
    out = Path(base.outputs[flag]).name
    yield make("read-only", f"ro-mount/{out}", "ro-mount", setup=_setup_mount("read-only"), root=True)
    yield make("full-disk", f"full-mount/{out}", "full-mount", setup=_setup_mount("full-disk"), root=True)


# ------------------------------------------------------------------------- paths read, then written


def input_output_bases() -> dict[tuple[tuple[str, ...], str], Base]:
    """``(command, flag) -> Base`` of every path the command reads and then writes (role input-output);
    an argument's flag is its name, given without one."""
    return {
        (("merge",), "target"): Base(("merge", "--num-shards", "2"), {"target": "sup"}),
        (("curate",), "--pool-features"): Base(
            ("curate", "p.json", "-o", "new-sup", "--source", "pool", "-k", "1", "--pool-images", "shots")
            + ("--clip-model", TINY[1], "--clip-pretrained", TINY[3]),
            {"--pool-features": "new-pool.h5"},
        ),
    }


def input_output_cases() -> list[OutputCase]:
    """A path read and then written, pointed at the user's file and folder, a link to the user's file and
    a path under a file: one clear line naming it, the user's file untouched."""
    table = input_output_bases()
    found = []
    for param in walk():
        base = table.get((param.command, param.flag))
        if param.role != INPUT_OUTPUT or param.hidden or base is None:
            continue
        cid = f"{'-'.join(param.command)}:{param.flag}"
        for kind, value, message, setup in (
            ("foreign-file", "mine/thesis.tex", "thesis.tex", None),
            ("foreign-folder", "mine", "mine", None),
            ("link-foreign", "link-out", "link-out", _link("link-out", "mine/thesis.tex")),
            ("parent-file", "mine/thesis.tex/new-out", "thesis.tex", None),
        ):
            case = Case(f"{cid}:{kind}", _argv(base, param.flag, value), 2, message, setup, timeout_s=300)
            found.append(OutputCase(case, value))
    return found


def generated_cases(llm_url: str) -> list[OutputCase]:
    """Every generated case of every output option that has a base (root-only cases included);
    ``llm_url``: the base URL of a fake LLM (``tests/test_cupl_llm.FakeLLM``) for --llm-cache."""
    env = {LLM_KEY_ENV: LLM_KEY, "OPENAI_BASE_URL": llm_url}
    table = bases()
    found = []
    for param in output_paths():
        base = table.get((param.command, param.flag))
        if base is not None:
            found += cases_for(param.command, param.flag, base, env)
    return found


def run_output_case(case: OutputCase, ws: Path) -> Outcome:
    """Run one generated case in workspace ``ws`` and classify it (harness outcomes); a correct run counts
    as ``ok`` only where the case allows it and the output was written."""
    old = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    try:
        outcome = run_case(case.case, ws)
    finally:
        unmount_all(ws)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if outcome.kind == "silent" and case.may_succeed:
        outcome.kind = "ok" if (ws / case.output).exists() else "silent"
    return outcome


def expected_kinds(case: OutputCase) -> tuple[str, ...]:
    return ("clear", "ok") if case.may_succeed else ("clear",)
