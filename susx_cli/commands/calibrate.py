"""susx calibrate: choose a method's hyperparameters -> calibration.json. The methods and their options come
from the method registry (method/registry.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from susx_cli.commands._common import options_command, run, with_method_options
from susx_cli.options import cli_fields
from susx_cli.stages.options import CalibrateOptions

if TYPE_CHECKING:
    from susx_cli.stages.results import CalibrateResult


@options_command(CalibrateOptions)
def calibrate(**values: Any) -> None:
    """Choose a method's hyperparameters and write calibration.json; print the chosen values and
    the objective (top-1 in %) on stderr.

    Examples:

      susx calibrate text.h5 support.h5 -o cal.json

      susx calibrate text.h5 support.h5 --mode val --val val.h5 --heatmap heat.png -o cal.json

      susx calibrate text.h5 support.h5 --method gda --mode fixed --gda-alpha 0.1 -o cal-gda.json
    """
    named = {f.name for f, _ in cli_fields(CalibrateOptions)}
    hyperparameters = {k: v for k, v in values.items() if k not in named and k not in ("quiet", "as_json")}

    def stage():
        from susx_cli.stages.calibrate import calibrate as calibrate_stage

        options = {k: values[k] for k in named}
        return calibrate_stage(CalibrateOptions(**options, hyperparameters=hyperparameters))

    run(stage, quiet=values["quiet"], as_json=values["as_json"], table=choice_table)


def choice_table(result: CalibrateResult):
    """The chosen hyperparameters and the objective they reached (top-1 in %; '-' for fixed values)."""
    from rich.table import Table

    s = result.summary
    values = s["hyperparameters"]
    table = Table(title=f"susx calibrate: {s['method']} ({s['mode']})", title_justify="left")
    for col in ("method", "mode", *values, "top1 (%)", "objective on"):
        table.add_column(col, justify="left" if col in ("method", "mode", "objective on") else "right")
    top1 = "-" if s["top1"] is None else f"{s['top1']:.2f}"
    table.add_row(
        s["method"], s["mode"], *[f"{v:g}" for v in values.values()], top1, s.get("objective_on") or "-"
    )
    return table


with_method_options(calibrate)
