"""Governance flows: promotion, rollback and retirement, each audited with its reason.

Triggered by hand (Prefect UI form or `modelcycle models promote|rollback|retire`).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from modelcycle.settings import get_settings
from tasks.governance import (
    check_test_score,
    promote_version,
    publish_governance_record,
    retire_version,
    rollback_champion,
)


@flow(name="promotion", description="Make a given version the champion, with a reason.")
def promotion(
    model_name: str,
    version: int,
    reason: str,
    actor: str = "promotion-flow",
    force: bool = False,
) -> dict[str, Any]:
    """Move the champion alias to `version` once its files verify against the registry; the
    previous champion is archived.

    Args:
        model_name: The registered model.
        version: The version to promote.
        reason: Why; recorded in the audit log.
        actor: Who; recorded in the audit log.
        force: Allow a rejected or retired version (recorded as forced).
    """
    registry_url = get_settings().registry_url
    check_test_score(registry_url, model_name, version, force)
    move = promote_version(registry_url, model_name, version, reason, actor, force)
    return publish_governance_record(move)


@flow(name="rollback", description="Give the champion alias back to the previous champion.")
def rollback(model_name: str, reason: str, actor: str = "rollback-flow") -> dict[str, Any]:
    """Restore the champion that the current one replaced, or the newest earlier one whose
    files still verify (what was skipped, and why, goes into the audit entry).

    Args:
        model_name: The registered model.
        reason: Why; recorded in the audit log.
        actor: Who; recorded in the audit log.
    """
    registry_url = get_settings().registry_url
    move = rollback_champion(registry_url, model_name, reason, actor)
    return publish_governance_record(move)


@flow(name="retirement", description="Retire a version for good, with a reason.")
def retirement(
    model_name: str,
    version: int,
    reason: str,
    actor: str = "retirement-flow",
    force: bool = False,
) -> dict[str, Any]:
    """Retire `version`: it can no longer be promoted (unless forced) or served.

    Args:
        model_name: The registered model.
        version: The version to retire.
        reason: Why; recorded in the audit log.
        actor: Who; recorded in the audit log.
        force: Allow retiring the champion (the alias goes back to the previous champion,
            or the model is left without one).
    """
    registry_url = get_settings().registry_url
    move = retire_version(registry_url, model_name, version, reason, actor, force)
    return publish_governance_record(move)
