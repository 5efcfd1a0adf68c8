"""The model card, rendered again from the run's recorded facts whenever the registry moves
(the run folder's own card is written with the folder: `modelcycle.reports.TrainingRun`)."""

from __future__ import annotations

from prefect import task

from modelcycle.registry import ModelVersion, Registry
from modelcycle.reports import read_card_facts, registry_view, render_card
from tasks.common import TASK_OPTIONS


@task(name="render-version-card", **TASK_OPTIONS)
def render_version_card(registry_url: str, version: ModelVersion) -> str:
    """The card with the version number, status and audit entries the registry holds now."""
    registry = Registry(registry_url)
    record = registry.get_version(version.model_name, version.version)
    audit = registry.audit_log(version.model_name)
    return render_card(read_card_facts(record), registry_view(record, audit))
