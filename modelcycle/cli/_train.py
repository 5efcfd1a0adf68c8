"""`modelcycle train`: one run of the training flow, refused before the run when the config
or its overrides are wrong."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from modelcycle.cli._console import (
    check_configured_server,
    console,
    embedded_server_settings,
    fail,
    open_registry,
    print_table,
)
from modelcycle.config import TrainingMode, TrainingOverrides
from modelcycle.errors import ModelcycleError


def check_run_config(config_path: str, overrides: TrainingOverrides) -> None:
    """The checks the flow's first task makes, run here so a bad config leaves no flow run."""
    from modelcycle.config import apply_overrides, load_config
    from modelcycle.training import build_pipeline

    config = load_config(config_path)
    build_pipeline(apply_overrides(config, overrides, f"{config_path} (with run overrides)"))


def parse_overrides(overrides: dict[str, Any] | None) -> TrainingOverrides:
    """Typed overrides; a wrong value is one line naming the option, before any run."""
    from pydantic import ValidationError

    try:
        return TrainingOverrides.model_validate(overrides or {})
    except ValidationError as exc:
        names = {"time_range.start": "--start", "time_range.end": "--end", "seed": "--seed"}
        lines = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            lines.append(f"{names.get(loc, loc)}: {err['msg'].removeprefix('Value error, ')}")
        raise ModelcycleError("\n".join(lines)) from None


def run_training(
    config_path: str, mode: TrainingMode, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Run the flow in this process (a temporary Prefect server if none is configured)."""
    from modelcycle.cli._runtime import prepare_prefect_env

    parsed = parse_overrides(overrides)
    check_configured_server()
    prepare_prefect_env()
    from flows.training import training

    check_run_config(config_path, parsed)
    with embedded_server_settings():
        return training(config_path=config_path, mode=mode, overrides=parsed)


def print_training_outcome(outcome: dict[str, Any]) -> None:
    metric = outcome["primary_metric"]
    value = outcome["metrics"].get(metric)
    console.print(
        f"[bold]{outcome['model']} v{outcome['version']}[/]: {outcome['status']} "
        f"(gate: {outcome['gate']}, {metric} {value:.4f})"
    )
    if outcome["champion_metrics"] is not None:
        old = outcome["champion_metrics"][metric]
        console.print(
            f"champion v{outcome['parent_version']} on the same holdout rows: {metric} {old:.4f}"
        )
    print_gate_checks(outcome["model"], outcome["version"])
    console.print(f"run folder: {outcome['run_folder']}", highlight=False)


def print_gate_checks(model: str, version: int) -> None:
    """Every check the gate made, as recorded in the registry, and the decision."""
    record = open_registry().get_version(model, version)
    table = Table("check", "value", "limit", "result")
    for c in record.gate["checks"]:
        limit = f"{c['comparison']} {c['limit']:g}" if c["limit"] is not None else "-"
        value = f"{c['value']:.4f}" if c["value"] is not None else "n/a"
        result = ("pass" if c["passed"] else "FAIL") if c["judged"] else "not judged"
        table.add_row(c["name"], value, limit, result)
    print_table(table)
    console.print(f"gate decision: {record.gate['decision']}", highlight=False)


def train(
    config: Annotated[str, typer.Argument(help="Pipeline config YAML.")],
    mode: Annotated[
        TrainingMode, typer.Option(help="Fit from scratch or fine-tune the champion.")
    ] = TrainingMode.scratch,
    data: Annotated[str | None, typer.Option(help="Train on this CSV/Parquet file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override split.seed.")] = None,
    skip_search: Annotated[bool, typer.Option(help="Skip the hyperparameter search.")] = False,
    start: Annotated[
        str | None,
        typer.Option(
            help="Train from this time on (ISO date/datetime or a number such as a year)."
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(help="Train up to this time, included (a date includes the whole day)."),
    ] = None,
) -> None:
    """Run the training flow for one pipeline config.

    --start/--end replace the config's data.time_range for this run (a side left out is open),
    so training or fine-tuning on the next period needs no copied config.
    """
    overrides: dict[str, Any] = {"data_source": data, "seed": seed, "skip_search": skip_search}
    if start is not None or end is not None:
        overrides["time_range"] = {"start": start, "end": end}
    try:
        print_training_outcome(run_training(config, mode, overrides))
    except ModelcycleError as exc:
        fail(str(exc))
