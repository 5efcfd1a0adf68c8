"""`modelcycle monitor`: one run of the monitoring flow on a window of production data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelcycle.cli._console import (
    NoRegistryError,
    check_configured_server,
    console,
    embedded_server_settings,
    fail,
    open_registry,
    styled,
)
from modelcycle.errors import ModelcycleError


def run_monitoring(model: str, window: str | None, **kwargs: Any) -> dict[str, Any]:
    """Run the flow on the temporary (or configured) Prefect server."""
    from modelcycle.cli._runtime import prepare_prefect_env

    check_configured_server()
    prepare_prefect_env()
    from flows.monitoring import monitoring

    with embedded_server_settings():
        return monitoring(model_name=model, window=window, **kwargs)


def print_monitoring_outcome(outcome: dict[str, Any]) -> None:
    colour = {"ok": "green", "warning": "yellow", "drift": "red"}.get(outcome["status"], "blue")
    share = outcome["share_drifted"]
    shown = "-" if share is None else f"{share:.0%}"
    console.print(
        styled(
            (f"{outcome['model']} v{outcome['version']}", "bold"),
            ": ",
            (outcome["status"], f"bold {colour}"),
            f" (features drifted {shown}: {', '.join(outcome['drifted_columns']) or 'none'})",
        )
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
        console.print(
            styled(
                "  ", (f"incident #{incident['id']}", "bold red"), f" ({incident['kind']}) {verb}"
            )
        )
    if outcome.get("event_id"):
        from modelcycle.monitoring import DRIFT_EVENT  # loaded by the flow; not at CLI start-up

        console.print(f"  event {DRIFT_EVENT} emitted ({outcome['event_id']})")
    _print_production(outcome.get("production"))
    if outcome.get("html_report"):
        console.print(f"  report: {outcome['html_report']}", highlight=False)


def _print_production(production: dict[str, Any] | None) -> None:
    """The log's own figures: labels, each version's service health, back-fills, rollback."""
    if not production:
        return
    labels = production["labels"]
    delay = labels.get("delay_hours")
    waited = "" if not delay else f", label delay p50 {delay['p50']:.1f} h"
    console.print(
        f"  labels: {labels['labelled']:,} of {labels['rows']:,} rows "
        f"({labels['coverage']:.0%}){waited}",
        highlight=False,
    )
    for row in production["service"]["rows"]:
        error = row["error_rate"]
        console.print(
            f"  v{row['version']}: {row['rows']:,} rows, {row['requests']:,} requests, "
            f"p50 {row['latency_p50_ms']:.1f} ms, p99 {row['latency_p99_ms']:.1f} ms, "
            f"error rate {'-' if error is None else f'{error:.2%}'}",
            highlight=False,
        )
    for line in production.get("backfilled") or []:
        console.print(f"  back-filled {line}", highlight=False)
    for plot in production.get("plots") or []:
        console.print(f"  plot: {plot}", highlight=False)


def monitored_model(model: str | None) -> str:
    """The named model, else the registry's only one: a generic command has no demo default."""
    if model is not None:
        return model
    try:
        names = [record.name for record in open_registry().list_models()]
    except NoRegistryError as exc:
        raise ModelcycleError(f"--model: the registry holds no models ({exc})") from None
    if len(names) == 1:
        console.print(f"monitoring {names[0]}, the only model in the registry", highlight=False)
        return names[0]
    held = f"{len(names)} models ({', '.join(names)})" if names else "no models"
    raise ModelcycleError(f"--model: the registry holds {held}; name the one to monitor")


def monitor(
    window: Annotated[
        str | None, typer.Argument(help="CSV/Parquet file or glob (quote it); or use --log.")
    ] = None,
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
    log: Annotated[
        bool,
        typer.Option(
            "--log",
            help="Monitor the model's prediction log (what the service answered) instead of "
            "a file.",
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="With --log: from this time (ISO date/datetime, UTC unless a zone is "
            "given); default where the last monitoring run of the log stopped."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="With --log: up to this time, excluded; default now.")
    ] = None,
) -> None:
    """Run the monitoring flow on one window: a file, or the prediction log (--log)."""
    try:
        source = _source(window, log, since, until, start, end, latest_only)
        time_range = _time_range(start, end)
        if thresholds is not None:
            _check_thresholds(thresholds, model)
        bounds = {"since": _moment("--since", since), "until": _moment("--until", until)}
        if source == "file":
            bounds = {}
        outcome = run_monitoring(
            monitored_model(model),
            window,
            time_range=time_range,
            latest_only=latest_only,
            config_path=thresholds,
            **({"source": "log", **bounds} if source == "log" else {}),
        )
    except ModelcycleError as exc:
        fail(str(exc))
    print_monitoring_outcome(outcome)


def _source(
    window: str | None,
    log: bool,
    since: str | None,
    until: str | None,
    start: str | None,
    end: str | None,
    latest_only: bool,
) -> str:
    """`file` or `log`, or one line saying which options do not go together."""
    if log and window is not None:
        raise ModelcycleError("give a WINDOW file or --log, not both")
    if not log and window is None:
        raise ModelcycleError("WINDOW: name a CSV/Parquet file or glob, or give --log")
    if not log and (since or until):
        raise ModelcycleError("--since/--until select a range of the prediction log: add --log")
    if log and (start or end or latest_only):
        raise ModelcycleError(
            "--start/--end/--latest-only select rows of window files; with --log use "
            "--since/--until"
        )
    return "log" if log else "file"


def _moment(option: str, value: str | None) -> Any:
    """An ISO date or datetime as a UTC datetime (naive values are UTC)."""
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ModelcycleError(
            f"{option} {value!r}: expected an ISO date or datetime, e.g. 2026-05-04 or "
            "2026-05-04T08:00:00+00:00"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


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
