"""What a version is made of: code, packages, configuration and data, recorded once per run."""

from __future__ import annotations

from typing import Any

from prefect import task
from sklearn.pipeline import Pipeline

from modelcycle.artifacts import dump_model, run_lineage, sha256_bytes
from modelcycle.config import PipelineConfig
from modelcycle.data import LabelledLog
from tasks.common import TASK_OPTIONS


@task(name="record-lineage", **TASK_OPTIONS)
def record_lineage(
    config: PipelineConfig,
    fingerprints: dict[str, str],
    source: str,
    mode: str,
    parent_version: int | None,
    flow_run_id: str,
    log: LabelledLog | None = None,
) -> dict[str, Any]:
    """With a labelled prediction log among the data, its parts and their SHA-256 too."""
    resolved = config.model_dump(mode="json")
    lineage = run_lineage(resolved, fingerprints, source, mode, parent_version, flow_run_id)
    if log is not None:
        lineage["prediction_log"] = log.lineage()
    return lineage


@task(name="serialize-model", **TASK_OPTIONS)
def serialize_model(pipeline: Pipeline) -> tuple[bytes, str]:
    """skops bytes, reproducible for the same fitted model, and their SHA-256."""
    data = dump_model(pipeline)
    return data, sha256_bytes(data)
