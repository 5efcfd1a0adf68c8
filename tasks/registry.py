"""Registry steps: read the champion, record the candidate, move the champion alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from sklearn.pipeline import Pipeline

from modelcycle.artifacts import load_model
from modelcycle.errors import RegistryError
from modelcycle.registry import (
    AuditEntry,
    ModelVersion,
    Registration,
    Registry,
    VersionStatus,
)
from modelcycle.utils import json_ready
from tasks.common import TASK_OPTIONS


@dataclass(frozen=True)
class Champion:
    version: ModelVersion
    pipeline: Pipeline


@task(name="load-champion", **TASK_OPTIONS)
def load_champion(model: str, registry_url: str, required: bool) -> Champion | None:
    """The current champion, loaded only if its file still matches the registered hash."""
    record = Registry(registry_url).champion(model)
    if record is None:
        if required:
            raise RegistryError(
                f"fine-tune requested but model {model!r} has no champion; train from scratch first"
            )
        get_run_logger().info("No champion for %s yet", model)
        return None
    pipeline = load_model(record.model_location, record.model_sha256)
    get_run_logger().info("Champion is %s v%d", model, record.version)
    return Champion(record, pipeline)


def _gate_reason(gate: dict[str, Any]) -> str:
    verdict = "passed the gate" if gate["passed"] else "failed the gate"
    return f"{verdict}: " + "; ".join(gate["reasons"])


@task(name="register-version", **TASK_OPTIONS)
def register_version(
    registry_url: str, registration: Registration, passed: bool, actor: str
) -> ModelVersion:
    """A candidate if the gate (and reviewer) said promote, else `rejected` with its evidence."""
    status = VersionStatus.CANDIDATE if passed else VersionStatus.REJECTED
    version = Registry(registry_url).register_version(
        registration, status=status, actor=actor, reason=_gate_reason(registration.gate)
    )
    get_run_logger().info("Registered %s v%d as %s", version.model_name, version.version, status)
    return version


@task(name="record-approval", **TASK_OPTIONS)
def record_approval(
    registry_url: str, version: ModelVersion, approval: dict[str, Any]
) -> AuditEntry:
    """The reviewer's answer (or the timeout) as its own audit entry, actor = the reviewer."""
    if approval.get("timed_out"):
        action, actor = "approval-timeout", "approval-timeout"
        reason = f"no reviewer answered within {approval['timeout_seconds']} s"
    else:
        action = "approve" if approval["approved"] else "disapprove"
        actor = approval["reviewer"]
        reason = approval.get("comment") or f"{action}d in the Prefect UI"
    return Registry(registry_url).append_audit(
        actor=actor,
        action=action,
        model_name=version.model_name,
        version=version.version,
        reason=reason,
        details=json_ready(approval),
    )


@task(name="promote-champion", **TASK_OPTIONS)
def promote_champion(
    registry_url: str,
    version: ModelVersion,
    actor: str,
    reason: str,
    judged_against: int | None,
) -> ModelVersion:
    """Promote only if the champion is still the one the gate judged against; otherwise the
    candidate stays registered, not promoted, and the audit log says why."""
    move = Registry(registry_url).promote_judged(
        version.model_name,
        version.version,
        judged_against=judged_against,
        actor=actor,
        reason=reason,
    )
    logger = get_run_logger()
    if move.promoted:
        logger.info("%s v%d is now champion", version.model_name, version.version)
    else:
        logger.warning(
            "%s v%d not promoted: %s", version.model_name, version.version, move.entry.reason
        )
    return move.version
