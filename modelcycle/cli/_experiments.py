"""`modelcycle models shadow|canary|deprecate|experiments` and `modelcycle experiment`: put a
challenger beside the champion, announce a version's sunset, and run the experiment's
decision on demand.

Each move is one registry transaction with its audit entry; bad input (unknown version, one
the gate rejected, a share outside (0, 1), a sunset in the past) is refused in one line and
writes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from modelcycle.cli._console import (
    MAX_RECORD_ID,
    check_configured_server,
    console,
    embedded_server_settings,
    fail,
    open_registry,
    print_table,
)
from modelcycle.errors import ModelcycleError

Reason = Annotated[str, typer.Option(help="Why; recorded in the audit log.")]
Version = Annotated[int, typer.Argument(help="The challenger version.", min=1, max=MAX_RECORD_ID)]


def _rollouts() -> Any:
    from modelcycle.registry import Rollouts
    from modelcycle.settings import get_settings

    open_registry()  # refuses a URL where no registry exists, creating nothing
    return Rollouts(get_settings().registry_url)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _reason(reason: str) -> str:
    if not reason.strip():
        raise ModelcycleError("--reason: expected a non-empty reason (it goes into the audit log)")
    return reason


def parse_sunset(text: str) -> datetime:
    """A date (midnight UTC that day) or an ISO-8601 time with its UTC offset."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ModelcycleError(
            f"--sunset: expected a date (2027-01-31) or an ISO time with an offset "
            f"(2027-01-31T12:00:00+00:00), got {text!r}"
        )
    return moment.astimezone(UTC)


def shadow(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Version,
    reason: Reason = "shadow before promotion",
) -> None:
    """Score every request with VERSION too, off the response path (role `shadow` in the log)."""
    try:
        moved = _rollouts().start(
            name, version, mode="shadow", actor=_actor(), reason=_reason(reason)
        )
    except ModelcycleError as exc:
        fail(str(exc))
    e = moved.experiment
    console.print(
        f"{name} v{version} in shadow beside champion v{e.champion} "
        f"(experiment {e.id}, audit #{moved.entry.id})",
        highlight=False,
    )


def canary(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Version,
    share: Annotated[
        float, typer.Option(help="Share of requests the challenger answers, in (0, 1).")
    ] = 0.1,
    reason: Reason = "canary",
) -> None:
    """Let VERSION answer a deterministic share of requests (by entity key or request id)."""
    try:
        moved = _rollouts().start(
            name, version, mode="canary", share=share, actor=_actor(), reason=_reason(reason)
        )
    except ModelcycleError as exc:
        fail(str(exc))
    e = moved.experiment
    console.print(
        f"{name} v{version} answers {share:.1%} of requests beside champion v{e.champion} "
        f"(experiment {e.id}, audit #{moved.entry.id})",
        highlight=False,
    )


def deprecate(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to deprecate.", min=1, max=MAX_RECORD_ID)],
    sunset: Annotated[
        str, typer.Option(help="When its pinned route stops answering (410): a date or time.")
    ],
    successor: Annotated[
        int | None,
        typer.Option(help="The version to move to (Link rel=successor-version).", min=1),
    ] = None,
    reason: Reason = "deprecated",
) -> None:
    """Announce VERSION's sunset: pinned requests get Deprecation, Sunset and Link headers."""
    try:
        moment = parse_sunset(sunset)
        notice, entry = _rollouts().deprecate(
            name,
            version,
            sunset=moment,
            successor=successor,
            actor=_actor(),
            reason=_reason(reason),
        )
    except ModelcycleError as exc:
        fail(str(exc))
    after = f", successor v{notice.successor}" if notice.successor else ""
    console.print(
        f"{name} v{version} deprecated: sunset {notice.sunset.isoformat()}{after} "
        f"(audit #{entry.id})",
        highlight=False,
    )


def experiments(
    name: Annotated[str, typer.Argument(help="Model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every experiment of a model: mode, status, looks and the last evidence."""
    try:
        rollouts = _rollouts()
        rollouts.registry.get_model(name)
        history = rollouts.history(name)
    except ModelcycleError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps([e.to_dict() for e in history], indent=2))
        return
    table = Table("#", "challenger", "champion", "mode", "share", "status", "looks", "last")
    for e in history:
        last = e.last_evidence.get("summary", "-")
        table.add_row(
            str(e.id),
            f"v{e.challenger}",
            f"v{e.champion}",
            e.mode.value,
            f"{e.share:.0%}" if e.share else "-",
            e.status.value,
            str(e.looks),
            str(last),
        )
    print_table(table)


def experiment(
    name: Annotated[str, typer.Argument(help="Model name.")],
    config: Annotated[
        str | None,
        typer.Option(
            help="Pipeline config whose `experiment:` section decides (default: the "
            "champion's recorded config)."
        ),
    ] = None,
) -> None:
    """Look at the running experiment once (the `experiment` flow): promote, stop or continue."""
    from modelcycle.cli._runtime import prepare_prefect_env

    try:
        _rollouts().registry.get_model(name)
        check_configured_server()
        prepare_prefect_env()
        from flows.experiment import experiment as experiment_flow

        with embedded_server_settings():
            result = experiment_flow(model_name=name, config_path=config, actor=_actor())
    except ModelcycleError as exc:
        fail(str(exc))
    console.print(result["summary"], highlight=False)
