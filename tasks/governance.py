"""Governance steps: move or retire a version, each one registry transaction with its audit
entry, and show what happened in the Prefect UI."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from modelcycle.registry import Move, Registry
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
