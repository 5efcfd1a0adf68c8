"""Retention steps: which models have a prediction log, and removing what is past retention."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from modelcycle.records import apply_retention
from modelcycle.registry import Registry
from tasks.common import TASK_OPTIONS


@task(name="logged-models", **TASK_OPTIONS)
def logged_models(registry_url: str, model_name: str | None) -> list[str]:
    """The model asked for, or every registered model (each may have a log)."""
    if model_name is not None:
        Registry(registry_url).get_model(model_name)  # unknown names fail here, by name
        return [model_name]
    return [m.name for m in Registry(registry_url).list_models()]


@task(name="apply-retention", **TASK_OPTIONS)
def retain(registry_url: str, log_root: str, model: str, days: int, actor: str) -> dict[str, Any]:
    report = apply_retention(Registry(registry_url), log_root, model, days, actor=actor)
    get_run_logger().info(
        "%s: removed %d partitions (%d records) before %s, kept %d",
        model,
        len(report.removed),
        report.rows,
        report.cutoff,
        report.kept,
    )
    return report.to_dict()
