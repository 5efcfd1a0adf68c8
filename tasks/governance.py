"""Governance steps: move or retire a version, each one registry transaction with its audit
entry, and show what happened in the Prefect UI."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from modelcycle.registry import ModelVersion, Registry
from tasks.common import TASK_OPTIONS


@task(name="promote-version", **TASK_OPTIONS)
def promote_version(
    registry_url: str, model_name: str, version: int, reason: str, actor: str, force: bool
) -> ModelVersion:
    promoted = Registry(registry_url).promote(
        model_name, version, actor=actor, reason=reason, force=force
    )
    get_run_logger().info("%s v%d is now champion (%s)", model_name, version, reason)
    return promoted


@task(name="rollback-champion", **TASK_OPTIONS)
def rollback_champion(registry_url: str, model_name: str, reason: str, actor: str) -> ModelVersion:
    restored = Registry(registry_url).rollback(model_name, actor=actor, reason=reason)
    get_run_logger().info("%s rolled back to v%d (%s)", model_name, restored.version, reason)
    return restored


@task(name="retire-version", **TASK_OPTIONS)
def retire_version(
    registry_url: str, model_name: str, version: int, reason: str, actor: str, force: bool
) -> ModelVersion:
    retired = Registry(registry_url).retire(
        model_name, version, actor=actor, reason=reason, force=force
    )
    get_run_logger().info("%s v%d retired (%s)", model_name, version, reason)
    return retired


@task(name="publish-governance-record", **TASK_OPTIONS)
def publish_governance_record(registry_url: str, model_name: str) -> dict[str, Any]:
    """The audit entry just written, and who is champion now, as a markdown artifact."""
    registry = Registry(registry_url)
    entry = registry.audit_log(model_name)[-1]
    champion = registry.champion(model_name)
    now = f"v{champion.version}" if champion else "none"
    create_markdown_artifact(
        key=f"{model_name}-governance",
        markdown="\n".join(
            [
                f"# {model_name}: {entry.action} v{entry.version}",
                "",
                f"- by **{entry.actor}** at {entry.at.isoformat()}",
                f"- reason: {entry.reason}",
                f"- details: `{entry.details}`",
                f"- champion now: {now}",
            ]
        ),
        description=f"Last governance action on {model_name}",
    )
    return {**entry.to_dict(), "champion": champion.version if champion else None}
