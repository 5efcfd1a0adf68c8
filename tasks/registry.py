"""Registry steps: read the champion, record the candidate, move the champion alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from sklearn.pipeline import Pipeline

from modelcycle.errors import RegistryError
from modelcycle.evaluation import json_ready
from modelcycle.model_io import load_model
from modelcycle.registry import ModelVersion, Registry, VersionStatus
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


@task(name="register-version", **TASK_OPTIONS)
def register_version(
    registry_url: str, fields: dict[str, Any], passed: bool, actor: str
) -> ModelVersion:
    status = VersionStatus.CANDIDATE if passed else VersionStatus.REJECTED
    reason = (
        "passed the gate" if passed else "failed the gate: " + "; ".join(fields["gate"]["reasons"])
    )
    strict = {
        **fields,
        "metrics": json_ready(fields["metrics"]),
        "gate": json_ready(fields["gate"]),
    }
    version = Registry(registry_url).register_version(
        **strict, status=status, actor=actor, reason=reason
    )
    get_run_logger().info("Registered %s v%d as %s", version.model_name, version.version, status)
    return version


@task(name="promote-champion", **TASK_OPTIONS)
def promote_champion(registry_url: str, version: ModelVersion, actor: str) -> ModelVersion:
    promoted = Registry(registry_url).promote(
        version.model_name, version.version, actor=actor, reason="passed the gate in training"
    )
    get_run_logger().info("%s v%d is now champion", promoted.model_name, promoted.version)
    return promoted
