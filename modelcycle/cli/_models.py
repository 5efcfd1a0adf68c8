"""`modelcycle models`: read the registry, and move versions through the governance flows.

Every move is refused here, before a flow run exists, when the model or version is unknown or
the reason is empty; the flow itself checks again.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from modelcycle.cli._console import (
    MAX_RECORD_ID,
    check_configured_server,
    console,
    embedded_server_settings,
    errors,
    fail,
    open_registry,
    print_table,
    styled,
)
from modelcycle.errors import ModelcycleError

models_app = typer.Typer(
    help="Read the model registry; promote, roll back and retire versions.", no_args_is_help=True
)


def run_governance_flow(name: str, **params: Any) -> dict[str, Any]:
    """Run a governance flow in this process (a temporary Prefect server if none is set)."""
    from modelcycle.cli._runtime import prepare_prefect_env

    check_configured_server()
    prepare_prefect_env()
    from flows import governance

    with embedded_server_settings():
        return getattr(governance, name)(**params)


def card_text(name: str, version: int | None) -> str:
    """The card rendered now from the checked facts and the audit log as it stands."""
    from modelcycle.reports import read_card_facts, registry_view, render_card

    registry = open_registry()
    if version is None:
        record = registry.champion(name)
        if record is None:
            versions = registry.list_versions(name)
            if not versions:
                raise ModelcycleError(f"model {name!r} has no versions yet")
            record = versions[-1]
    else:
        record = registry.get_version(name, version)
    card = render_card(read_card_facts(record), registry_view(record, registry.audit_log(name)))
    from modelcycle.cli._docs import test_score_section

    return card + test_score_section(name, record.version)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _check_promotable(name: str, version: int) -> None:
    """A version whose files changed since registration is refused without a flow run (the
    registry checks again when it moves the alias)."""
    from modelcycle.errors import IntegrityError
    from modelcycle.registry import version_problems

    record = open_registry().get_version(name, version)
    problems = version_problems(record)
    if problems:
        raise IntegrityError(
            f"refusing to make {name} v{version} champion: its files are not the files that "
            f"were registered: {problems[0]}"
        )


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise ModelcycleError("--reason: expected a non-empty reason (it goes into the audit log)")


@models_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every model with its champion and version count."""
    registry = open_registry()
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
    print_table(table)


@models_app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[
        int | None, typer.Argument(help="Version (default: all).", min=1, max=MAX_RECORD_ID)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """One version in full, or every version of a model."""
    registry = open_registry()
    try:
        records = [registry.get_version(name, version)] if version else registry.list_versions(name)
        if not records:
            registry.get_model(name)
    except ModelcycleError as exc:
        fail(str(exc))
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
        print_table(table)
        return
    for key, value in records[0].to_dict().items():
        shown = json.dumps(value, indent=2) if isinstance(value, dict | list) else value
        console.print(styled((key, "bold"), f": {shown}"), highlight=False)


@models_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[
        int, typer.Argument(help="Version to make champion.", min=1, max=MAX_RECORD_ID)
    ],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
    force: Annotated[
        bool, typer.Option(help="Allow a rejected or retired version (recorded as forced).")
    ] = False,
) -> None:
    """Make a version the champion (runs the `promotion` flow)."""
    try:
        _check_reason(reason)
        _check_promotable(name, version)  # refuse before a flow run exists
        record = run_governance_flow(
            "promotion",
            model_name=name,
            version=version,
            reason=reason,
            actor=_actor(),
            force=force,
        )
    except ModelcycleError as exc:
        fail(str(exc))
    # The entry this command's own transaction wrote (another promotion may follow at once).
    console.print(f"{name} v{version} became champion (audit #{record['id']})", highlight=False)


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
) -> None:
    """Give the champion alias back to the previous champion (runs the `rollback` flow)."""
    try:
        _check_reason(reason)
        open_registry().get_model(name)
        record = run_governance_flow("rollback", model_name=name, reason=reason, actor=_actor())
    except ModelcycleError as exc:
        fail(str(exc))
    console.print(
        f"{name} rolled back: v{record['champion']} became champion (audit #{record['id']})",
        highlight=False,
    )


@models_app.command("retire")
def retire(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to retire.", min=1, max=MAX_RECORD_ID)],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
    force: Annotated[
        bool, typer.Option(help="Allow retiring the champion (alias goes back or is removed).")
    ] = False,
) -> None:
    """Retire a version for good (runs the `retirement` flow)."""
    try:
        _check_reason(reason)
        open_registry().get_version(name, version)
        record = run_governance_flow(
            "retirement",
            model_name=name,
            version=version,
            reason=reason,
            actor=_actor(),
            force=force,
        )
    except ModelcycleError as exc:
        fail(str(exc))
    console.print(f"{name} v{version} retired (audit #{record['id']})", highlight=False)


@models_app.command("audit")
def audit(
    name: Annotated[str, typer.Argument(help="Model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every recorded decision about a model, oldest first; warns when its chain is broken."""
    try:
        registry = open_registry()
        entries = registry.audit_log(name)
        (report,) = registry.verify_audit(name)
    except ModelcycleError as exc:
        fail(str(exc))
    if not report.intact:  # on stderr, so --json output stays parseable
        errors.print(
            styled(
                ("warning:", "bold yellow"),
                f" {report.summary()}; this history may have been rewritten "
                f"(modelcycle audit verify {name})",
            ),
            highlight=False,
        )
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
    print_table(table)


@models_app.command("card")
def card(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[
        int | None,
        typer.Argument(
            help="Version (default: the champion, else the latest).", min=1, max=MAX_RECORD_ID
        ),
    ] = None,
) -> None:
    """Print the model card (Markdown), regenerated from the recorded facts and audit log."""
    try:
        text = card_text(name, version)
    except ModelcycleError as exc:
        fail(str(exc))
    print(text)


def distil_config_path(name: str, config: str | None) -> tuple[str, int]:
    """The config the student is trained from, and the teacher's version: `--config`, else the
    champion's own resolved config as its verified manifest recorded it (written under the
    state folder, so the flow reads a file like any other run and the Prefect UI shows it)."""
    import yaml

    from modelcycle.registry import open_run
    from modelcycle.settings import get_settings

    record = open_registry().champion(name)
    if record is None:
        raise ModelcycleError(f"model {name!r} has no champion to distil (train one first)")
    if config is not None:
        return config, record.version
    recorded = open_run(record).config
    folder = get_settings().home / "distil"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-v{record.version}.yaml"
    header = f"# The resolved config of {name} v{record.version}, read from its run's manifest.\n"
    path.write_text(header + yaml.safe_dump(recorded, sort_keys=False), encoding="utf-8")
    return str(path), record.version


def _check_student(name: str, path: str, overrides: dict[str, Any]) -> None:
    """The config must be this model's, and the student an allowed estimator for its task
    (checked by name before anything is imported, as the teacher's is)."""
    from modelcycle.cli._train import parse_overrides
    from modelcycle.config import apply_overrides, load_config
    from modelcycle.training import resolve_estimator, student_spec

    config = apply_overrides(load_config(path), parse_overrides(overrides), path)
    if config.name != name:
        raise ModelcycleError(f"--config: {path} is the config of {config.name!r}, not {name!r}")
    student_name, _ = student_spec(config)
    resolve_estimator(student_name, config=config)


@models_app.command("distil")
def distil(
    name: Annotated[str, typer.Argument(help="Model name; its champion is the teacher.")],
    student: Annotated[
        str | None,
        typer.Option(help="Student estimator import path (default: the config's, else HGB)."),
    ] = None,
    params: Annotated[
        str | None, typer.Option(help="Student parameters as JSON, e.g. '{\"max_depth\": 6}'.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(help="Pipeline config (default: the one the champion was trained from)."),
    ] = None,
) -> None:
    """Train a smaller student on the champion's outputs, judge it with every gate check plus
    fidelity to the teacher, and register it (parent: the champion, relation `distilled`)."""
    from modelcycle.cli._train import print_training_outcome, run_training
    from modelcycle.config import TrainingMode

    try:
        student_params = None
        if params is not None:
            try:
                student_params = json.loads(params)
            except json.JSONDecodeError as exc:
                raise ModelcycleError(f"--params: expected a JSON object ({exc})") from None
            if not isinstance(student_params, dict):
                raise ModelcycleError(f"--params: expected a JSON object, got {params!r}")
        path, teacher = distil_config_path(name, config)
        overrides = {"student": student, "student_params": student_params}
        _check_student(name, path, overrides)  # before a flow run exists
        console.print(f"distilling {name} v{teacher} (config {path})", highlight=False)
        print_training_outcome(run_training(path, TrainingMode.distil, overrides))
    except ModelcycleError as exc:
        fail(str(exc))
