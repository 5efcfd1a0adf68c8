"""`modelcycle monitor`: one run of the monitoring flow on a window of production data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelcycle.cli._console import console, embedded_server_settings, fail, open_registry
from modelcycle.errors import ModelcycleError


def run_monitoring(model: str, window: str, **kwargs: Any) -> dict[str, Any]:
    """Run the flow on the temporary (or configured) Prefect server."""
    from modelcycle.cli._runtime import prepare_prefect_env

    prepare_prefect_env()
    from flows.monitoring import monitoring

    with embedded_server_settings():
        return monitoring(model_name=model, window=window, **kwargs)


def print_monitoring_outcome(outcome: dict[str, Any]) -> None:
    colour = {"ok": "green", "warning": "yellow", "drift": "red"}.get(outcome["status"], "blue")
    share = outcome["share_drifted"]
    shown = "-" if share is None else f"{share:.0%}"
    console.print(
        f"[bold]{outcome['model']} v{outcome['version']}[/]: "
        f"[bold {colour}]{outcome['status']}[/] (features drifted {shown}: "
        f"{', '.join(outcome['drifted_columns']) or 'none'})"
    )
    quality = outcome.get("quality") or {}
    realised, estimated = quality.get("realised") or {}, quality.get("estimated") or {}
    for metric in ("accuracy", "roc_auc"):
        if metric in realised or metric in estimated:
            r, e = realised.get(metric), estimated.get(metric)
            console.print(
                f"  {metric}: realised {'-' if r is None else f'{r:.3f}'}, "
                f"estimated without labels {'-' if e is None else f'{e:.3f}'}"
            )
    for reason in outcome["reasons"]:
        console.print(f"  - {reason}", highlight=False)
    for incident in outcome.get("incidents") or []:
        verb = "opened" if incident["opened"] else f"updated ({incident['occurrences']} times)"
        console.print(f"  [bold red]incident #{incident['id']}[/] ({incident['kind']}) {verb}")
    if outcome.get("event_id"):
        from modelcycle.monitoring import DRIFT_EVENT  # loaded by the flow; not at CLI start-up

        console.print(f"  event {DRIFT_EVENT} emitted ({outcome['event_id']})")
    if outcome.get("html_report"):
        console.print(f"  report: {outcome['html_report']}", highlight=False)


def monitored_model(model: str | None) -> str:
    """The named model, else the registry's only one: a generic command has no demo default."""
    if model is not None:
        return model
    names = [record.name for record in open_registry().list_models()]
    if len(names) == 1:
        console.print(f"monitoring {names[0]}, the only model in the registry", highlight=False)
        return names[0]
    held = f"{len(names)} models ({', '.join(names)})" if names else "no models"
    raise ModelcycleError(f"--model: the registry holds {held}; name the one to monitor")


def monitor(
    window: Annotated[str, typer.Argument(help="CSV/Parquet file or glob (quote it).")],
    model: Annotated[
        str | None,
        typer.Option(help="Model whose champion is monitored (default: the registry's only one)."),
    ] = None,
    latest_only: Annotated[bool, typer.Option(help="Only the newest matching file.")] = False,
    start: Annotated[
        str | None, typer.Option(help="Time column from (inclusive): ISO date/datetime or number.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Time column up to (inclusive; a date includes its day).")
    ] = None,
    thresholds: Annotated[
        str | None,
        typer.Option(
            "--thresholds",
            "--config",
            help="Take the `monitoring` thresholds from this YAML: a file with only a "
            "`monitoring:` section, or a pipeline config of the model.",
        ),
    ] = None,
) -> None:
    """Run the monitoring flow on one window."""
    try:
        time_range = _time_range(start, end)
        if thresholds is not None:
            _check_thresholds(thresholds, model)
        outcome = run_monitoring(
            monitored_model(model),
            window,
            time_range=time_range,
            latest_only=latest_only,
            config_path=thresholds,
        )
    except ModelcycleError as exc:
        fail(str(exc))
    print_monitoring_outcome(outcome)


def _time_range(start: str | None, end: str | None) -> Any:
    """The typed range, or one line naming the option that is wrong."""
    from pydantic import ValidationError

    from modelcycle.config import TimeRange

    if start is None and end is None:
        return None
    try:
        return TimeRange(start=start, end=end)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = {"start": "--start", "end": "--end"}.get(str(err["loc"][0]) if err["loc"] else "")
        raise ModelcycleError(
            f"{option or '--start/--end'}: {err['msg'].removeprefix('Value error, ')}"
        ) from None


def _check_thresholds(path: str, model: str | None) -> None:
    """A thresholds file is read before any run, so a typo in it starts nothing."""
    from modelcycle.config import load_monitoring_section, read_yaml

    raw = read_yaml(Path(path))
    name = raw.get("name") if isinstance(raw, dict) else None
    load_monitoring_section(path, model or name or "")
