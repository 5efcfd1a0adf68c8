"""Governance steps: move or retire a version, each one registry transaction with its audit
entry, and show what happened in the Prefect UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from modelcycle.artifacts import ArtifactStore
from modelcycle.errors import RegistryError
from modelcycle.registry import IncidentLog, Move, Registry
from tasks.common import TASK_OPTIONS


@task(name="promote-version", **TASK_OPTIONS)
def promote_version(
    registry_url: str, model_name: str, version: int, reason: str, actor: str, force: bool
) -> Move:
    move = Registry(registry_url).promote(
        model_name, version, actor=actor, reason=reason, force=force
    )
    get_run_logger().info("%s v%d is now champion (%s)", model_name, version, reason)
    return move


def test_score_shortfall(registry_url: str, model_name: str, version: int) -> str | None:
    """Why the version may not be promoted under its own gate's `min_ml_test_score`, or None.

    Scored from the records as they stand at the move, exactly as `modelcycle models score`
    shows it (`prefect.yaml` read from the folder the flow runs in, where the deployments are
    declared), so the number a reviewer reads is the number the policy judged."""
    from modelcycle.settings import get_settings

    registry = Registry(registry_url)
    record = registry.get_version(model_name, version)
    manifest = ArtifactStore(get_settings().artifact_store).read_manifest(
        model_name, record.run_id, record.manifest_sha256
    )
    minimum = ((manifest.get("config") or {}).get("gate") or {}).get("min_ml_test_score")
    if minimum is None:  # the common case: no scoring, no reading of every record
        return None
    from modelcycle.reports import collect_records, ml_test_score  # the monitoring stack: slow

    incidents = IncidentLog(registry_url).list(model_name)
    chain = registry.verify_audit(model_name)[0]
    records = collect_records(record, registry.audit_log(model_name), chain, incidents, Path.cwd())
    score = ml_test_score(records)
    if score.final >= minimum:
        return None
    weakest = min(score.sections.items(), key=lambda item: item[1])
    return (
        f"{model_name} v{version}: ML Test Score {score.final:g} is below the gate's minimum "
        f"{minimum:g} (gate.min_ml_test_score; weakest section {weakest[0]} {weakest[1]:g}); "
        f"see `modelcycle models score {model_name} {version}`"
    )


@task(name="check-ml-test-score", **TASK_OPTIONS)
def check_test_score(registry_url: str, model_name: str, version: int, force: bool) -> None:
    """Refuse a promotion below the version's minimum ML Test Score before anything moves; a
    forced promotion goes through, recorded as forced."""
    shortfall = test_score_shortfall(registry_url, model_name, version)
    if shortfall is not None and not force:
        raise RegistryError(shortfall)
    if shortfall is not None:
        get_run_logger().warning("forced past the minimum: %s", shortfall)


@task(name="hold-below-ml-test-score", **TASK_OPTIONS)
def held_by_test_score(registry_url: str, model_name: str, version: int, actor: str) -> bool:
    """A passed candidate below its minimum ML Test Score stays a candidate; the audit log says
    why (a person can promote it later, forced, or after the records it lacks exist)."""
    shortfall = test_score_shortfall(registry_url, model_name, version)
    if shortfall is None:
        return False
    Registry(registry_url).append_audit(
        actor=actor,
        action="promotion-skipped",
        model_name=model_name,
        version=version,
        reason=shortfall,
        details={"policy": "gate.min_ml_test_score"},
    )
    get_run_logger().warning("not promoted: %s", shortfall)
    return True


@task(name="rollback-champion", **TASK_OPTIONS)
def rollback_champion(registry_url: str, model_name: str, reason: str, actor: str) -> Move:
    move = Registry(registry_url).rollback(model_name, actor=actor, reason=reason)
    get_run_logger().info("%s rolled back to v%d (%s)", model_name, move.champion, reason)
    return move


@task(name="retire-version", **TASK_OPTIONS)
def retire_version(
    registry_url: str, model_name: str, version: int, reason: str, actor: str, force: bool
) -> Move:
    move = Registry(registry_url).retire(
        model_name, version, actor=actor, reason=reason, force=force
    )
    get_run_logger().info("%s v%d retired (%s)", model_name, version, reason)
    return move


@task(name="publish-governance-record", **TASK_OPTIONS)
def publish_governance_record(move: Move) -> dict[str, Any]:
    """The audit entry this run's own transaction wrote, and the champion that transaction
    left, as a markdown artifact: never "the latest entry", which may be another run's."""
    entry = move.entry
    model_name = entry.model_name
    now = f"v{move.champion}" if move.champion is not None else "none"
    create_markdown_artifact(
        key=f"{model_name}-governance",
        markdown="\n".join(
            [
                f"# {model_name}: {entry.action} v{entry.version}",
                "",
                f"- audit entry #{entry.id}, position {entry.seq} of the chain, "
                f"hash `{entry.entry_hash}`",
                f"- by **{entry.actor}** at {entry.at.isoformat()}",
                f"- reason: {entry.reason}",
                f"- details: `{entry.details}`",
                f"- champion after this transaction: {now}",
            ]
        ),
        description=f"{entry.action} of {model_name} v{entry.version}, audit entry #{entry.id}",
    )
    return {**entry.to_dict(), "champion": move.champion}
