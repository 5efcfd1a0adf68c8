"""The retention flow: remove prediction-log partitions past retention, and audit it."""

from __future__ import annotations

from typing import Any

from prefect import flow

from modelcycle.serving import read_settings
from modelcycle.settings import get_settings
from tasks.retention import logged_models, retain


@flow(name="retention", description="Remove prediction-log data past its retention period.")
def retention(model_name: str | None = None, actor: str = "retention-flow") -> list[dict[str, Any]]:
    """Keep the prediction log for `MODELCYCLE_LOG_RETENTION_DAYS` (at least six months);
    remove the day partitions wholly older than that, each removal recorded in the audit log.

    Args:
        model_name: One model; every registered model when empty.
        actor: Who is recorded in the audit log.
    """
    settings = get_settings()
    log_root = read_settings().resolved_log_root
    models = logged_models(settings.registry_url, model_name)
    return [
        retain(settings.registry_url, log_root, m, settings.log_retention_days, actor)
        for m in models
    ]
