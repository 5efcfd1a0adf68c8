"""The `modelcycle` command: demo, training, and a read-only look at the registry.

Prefect is imported only inside the commands that run flows, after the offline settings
and the state folder's Prefect home are in the environment.
"""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelcycle.cli._monitoring import demo_monitoring, incidents_app, monitor
from modelcycle.errors import ModelcycleError

app = typer.Typer(
    help="The whole life of a machine-learning model on Prefect.", no_args_is_help=True
)
models_app = typer.Typer(
    help="Read the model registry; promote, roll back and retire versions.", no_args_is_help=True
)
config_app = typer.Typer(help="Pipeline configuration files.", no_args_is_help=True)
service_app = typer.Typer(
    help="A local Prefect server, work pool, deployments and worker, through Prefect's own "
    "commands (each one is printed).",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
app.add_typer(service_app, name="service")
app.add_typer(incidents_app, name="incidents")
app.command("monitor")(monitor)

console = Console(soft_wrap=True)  # long paths and hashes stay whole
errors = Console(stderr=True, soft_wrap=True)

DEMO_CONFIG = "configs/demo.yaml"
# Survey years the demo's second run fine-tunes on; later years stay unseen for monitoring.
DEMO_FINE_TUNE_YEARS = (2002.0, 2006.0)


def _fail(message: str) -> None:
    first, _, rest = message.partition("\n")
    errors.print(f"[bold red]error:[/] {first}", highlight=False)
    if rest:
        errors.print(rest, highlight=False)
    raise typer.Exit(code=1)


def _registry():
    from modelcycle.registry import Registry
    from modelcycle.settings import get_settings

    return Registry(get_settings().registry_url)


def _run_training(config_path: str, mode: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    from modelcycle.cli._runtime import prepare_prefect_env
    from modelcycle.config import TrainingOverrides

    parsed = TrainingOverrides.model_validate(overrides or {})
    _check_configured_server()
    prepare_prefect_env()
    from flows.training import TrainingMode, training
    from tasks.data import load_pipeline_config

    load_pipeline_config.fn(config_path, parsed)  # fail here, before a flow run exists
    with _embedded_server_settings():
        return training(config_path=config_path, mode=TrainingMode(mode), overrides=parsed)


def _check_configured_server() -> None:
    """A server named by PREFECT_API_URL must answer before a run is attempted."""
    import os

    from modelcycle.cli._server import check_server

    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        check_server(api_url)


def _run_flow(name: str, **params: Any) -> dict[str, Any]:
    """Run a governance flow in this process (a temporary Prefect server if none is set)."""
    from modelcycle.cli._runtime import prepare_prefect_env

    _check_configured_server()
    prepare_prefect_env()
    from flows import governance

    with _embedded_server_settings():
        return getattr(governance, name)(**params)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _embedded_server_settings() -> AbstractContextManager[Any]:
    """Heartbeats let a real server mark dead runs as crashed; a temporary server dies with
    this process, so they only cost a thread join of up to 1 s per run (measured)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        return nullcontext()
    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _print_outcome(outcome: dict[str, Any]) -> None:
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
    console.print(f"run folder: {outcome['run_folder']}", highlight=False)


@app.command()
def demo(
    config: Annotated[str, typer.Option(help="Demo pipeline config.")] = DEMO_CONFIG,
    monitor: Annotated[
        bool, typer.Option(help="Then monitor the unseen years 2008-2018, one window each.")
    ] = True,
) -> None:
    """The lifecycle on the demo model: train, judge a fine-tuned challenger with every gate
    check, roll back, retire, show the audit log and a model card per version, then monitor
    the unseen years."""
    try:
        console.rule("1. train from scratch on 1974-2000")
        first = _run_training(config, "scratch", None)
        _print_outcome(first)
        start, end = DEMO_FINE_TUNE_YEARS
        console.rule(f"2. fine-tune the champion on {start:.0f}-{end:.0f}, judged by the gate")
        second = _run_training(config, "fine_tune", {"time_range": {"start": start, "end": end}})
        _print_outcome(second)
        _print_checks(second["model"], second["version"])
        model = second["model"]
        if second["status"] == "champion":
            console.rule("3. roll back to the first champion, then retire the challenger")
            _run_flow(
                "rollback",
                model_name=model,
                reason="demo: go back to the champion trained on 1974-2000",
                actor="demo",
            )
        else:
            console.rule("3. the challenger was rejected; retire it")
        _run_flow(
            "retirement",
            model_name=model,
            version=second["version"],
            reason="demo: fine-tuned on 2002-2006 only; superseded",
            actor="demo",
        )
    except ModelcycleError as exc:
        _fail(str(exc))
    console.rule("audit log")
    audit(model, as_json=False)
    console.rule("registry")
    list_models(as_json=False)
    for outcome in (first, second):
        path = _write_card(model, outcome["version"])
        console.print(f"model card of v{outcome['version']}: {path}", highlight=False)
    console.print(f"print one with: modelcycle models card {model} VERSION", highlight=False)
    if monitor:
        try:
            demo_monitoring(model)
        except ModelcycleError as exc:
            _fail(str(exc))


def _print_checks(model: str, version: int) -> None:
    record = _registry().get_version(model, version)
    table = Table("check", "value", "limit", "result")
    for c in record.gate["checks"]:
        limit = f"{c['comparison']} {c['limit']:g}" if c["limit"] is not None else "-"
        value = f"{c['value']:.4f}" if c["value"] is not None else "n/a"
        result = ("pass" if c["passed"] else "FAIL") if c["judged"] else "not judged"
        table.add_row(c["name"], value, limit, result)
    console.print(table)
    console.print(f"gate decision: {record.gate['decision']}", highlight=False)


def _card_text(name: str, version: int | None) -> str:
    from modelcycle.reports import read_card_facts, registry_view, render_card

    registry = _registry()
    if version is None:
        record = registry.champion(name)
        if record is None:
            versions = registry.list_versions(name)
            if not versions:
                raise ModelcycleError(f"model {name!r} has no versions yet")
            record = versions[-1]
    else:
        record = registry.get_version(name, version)
    return render_card(read_card_facts(record), registry_view(record, registry.audit_log(name)))


def _write_card(name: str, version: int) -> Path:
    """The card as of now, next to the registry (the run folder keeps the training-time one)."""
    from modelcycle.settings import get_settings

    folder = get_settings().home / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-v{version}.md"
    path.write_text(_card_text(name, version), encoding="utf-8")
    return path


@app.command()
def train(
    config: Annotated[str, typer.Argument(help="Pipeline config YAML.")],
    mode: Annotated[str, typer.Option(help="scratch or fine_tune.")] = "scratch",
    data: Annotated[str | None, typer.Option(help="Train on this CSV/Parquet file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override split.seed.")] = None,
    skip_search: Annotated[bool, typer.Option(help="Skip the hyperparameter search.")] = False,
) -> None:
    """Run the training flow for one pipeline config."""
    if mode not in ("scratch", "fine_tune"):
        _fail(f"--mode: expected 'scratch' or 'fine_tune', got {mode!r}")
    overrides = {"data_source": data, "seed": seed, "skip_search": skip_search}
    try:
        _print_outcome(_run_training(config, mode, overrides))
    except ModelcycleError as exc:
        _fail(str(exc))


@models_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every model with its champion and version count."""
    registry = _registry()
    rows = []
    for model in registry.list_models():
        versions = registry.list_versions(model.name)
        champion = registry.champion(model.name)
        rows.append(
            {
                "name": model.name,
                "owner": model.owner,
                "versions": len(versions),
                "champion": champion.version if champion else None,
                "latest": versions[-1].version if versions else None,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("model", "owner", "versions", "champion", "latest")
    for row in rows:
        table.add_row(*(str(row[k]) if row[k] is not None else "-" for k in row))
    console.print(table)


@models_app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Argument(help="Version (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """One version in full, or every version of a model."""
    registry = _registry()
    try:
        records = [registry.get_version(name, version)] if version else registry.list_versions(name)
        if not records:
            registry.get_model(name)
    except ModelcycleError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if version is None:
        table = Table("version", "status", "parent", "created", "metrics", "code")
        for r in records:
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in r.metrics.items() if v is not None)
            table.add_row(
                str(r.version),
                str(r.status),
                str(r.parent_version or "-"),
                r.created_at.strftime("%Y-%m-%d %H:%M"),
                metrics,
                r.code_version,
            )
        console.print(table)
        return
    for key, value in records[0].to_dict().items():
        shown = json.dumps(value, indent=2) if isinstance(value, dict | list) else value
        console.print(f"[bold]{key}[/]: {shown}", highlight=False)


@models_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
    force: Annotated[
        bool, typer.Option(help="Allow a rejected or retired version (recorded as forced).")
    ] = False,
) -> None:
    """Make a version the champion (runs the `promotion` flow)."""
    try:
        _check_reason(reason)
        _registry().get_version(name, version)  # refuse before a flow run exists
        record = _run_flow(
            "promotion",
            model_name=name,
            version=version,
            reason=reason,
            actor=_actor(),
            force=force,
        )
    except ModelcycleError as exc:
        _fail(str(exc))
    console.print(f"{name} v{version} is champion (audit #{record['id']})", highlight=False)


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
) -> None:
    """Give the champion alias back to the previous champion (runs the `rollback` flow)."""
    try:
        _check_reason(reason)
        _registry().get_model(name)
        record = _run_flow("rollback", model_name=name, reason=reason, actor=_actor())
    except ModelcycleError as exc:
        _fail(str(exc))
    console.print(
        f"{name} rolled back: v{record['champion']} is champion (audit #{record['id']})",
        highlight=False,
    )


@models_app.command("retire")
def retire(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to retire.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
    force: Annotated[
        bool, typer.Option(help="Allow retiring the champion (alias goes back or is removed).")
    ] = False,
) -> None:
    """Retire a version for good (runs the `retirement` flow)."""
    try:
        _check_reason(reason)
        _registry().get_version(name, version)
        record = _run_flow(
            "retirement",
            model_name=name,
            version=version,
            reason=reason,
            actor=_actor(),
            force=force,
        )
    except ModelcycleError as exc:
        _fail(str(exc))
    console.print(f"{name} v{version} retired (audit #{record['id']})", highlight=False)


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise ModelcycleError("--reason: expected a non-empty reason (it goes into the audit log)")


@models_app.command("audit")
def audit(
    name: Annotated[str, typer.Argument(help="Model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every recorded decision about a model, oldest first."""
    try:
        entries = _registry().audit_log(name)
    except ModelcycleError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table("#", "at (UTC)", "actor", "action", "version", "reason")
    for e in entries:
        table.add_row(
            str(e.id),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            str(e.version) if e.version is not None else "-",
            e.reason,
        )
    console.print(table)


@models_app.command("card")
def card(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[
        int | None, typer.Argument(help="Version (default: the champion, else the latest).")
    ] = None,
) -> None:
    """Print the model card (Markdown), regenerated from the recorded facts and audit log."""
    try:
        text = _card_text(name, version)
    except ModelcycleError as exc:
        _fail(str(exc))
    print(text)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of a pipeline config."""
    from modelcycle.config import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))


@config_app.command("validate")
def config_validate(path: Annotated[Path, typer.Argument(help="Pipeline config YAML.")]) -> None:
    """Check a config file against the schema without running anything."""
    from modelcycle.config import load_config

    try:
        config = load_config(path)
    except ModelcycleError as exc:
        _fail(str(exc))
    console.print(f"{path}: valid ({config.name}, {config.task})", highlight=False)


def _service(port: int):
    from modelcycle.cli._server import Service
    from modelcycle.settings import get_settings

    return Service(get_settings().home / "service", port)


PortOption = Annotated[int, typer.Option(help="Loopback port of the Prefect server and UI.")]


@service_app.command("up")
def service_up(
    port: PortOption = 4200,
    worker: Annotated[bool, typer.Option(help="Also start a process worker.")] = True,
) -> None:
    """Start a Prefect server (its home under the state folder), create the work pool and the
    crash automation, deploy everything in prefect.yaml, and start a worker."""
    import os

    from modelcycle.cli._server import up

    service = _service(port)
    try:
        up(service, os.environ, lambda line: console.print(line, highlight=False), worker)
    except ModelcycleError as exc:
        _fail(str(exc))
    console.print(f"logs and process ids: {service.folder}", highlight=False)


@service_app.command("status")
def service_status(port: PortOption = 4200) -> None:
    """Is the server (PREFECT_API_URL, or the local one on PORT) answering; are ours running?"""
    import os

    from modelcycle.cli._server import check_server, recorded_pid

    service = _service(port)
    api_url = os.environ.get("PREFECT_API_URL") or service.api_url
    try:
        check_server(api_url)
    except ModelcycleError as exc:
        _fail(str(exc))
    console.print(f"Prefect server at {api_url}: healthy", highlight=False)
    for name in ("server", "worker"):
        pid = recorded_pid(service, name)
        console.print(f"{name} started here: {f'pid {pid}' if pid else 'not running'}")


@service_app.command("down")
def service_down(port: PortOption = 4200) -> None:
    """Stop the worker and the server that `service up` started (by their process ids)."""
    from modelcycle.cli._server import down

    down(_service(port), lambda line: console.print(line, highlight=False))


def main() -> None:
    try:
        app()
    except ModelcycleError as exc:  # anything a command did not catch itself
        errors.print(f"error: {exc}", highlight=False)
        sys.exit(1)
