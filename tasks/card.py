"""The model card: facts gathered once per run, rendered again whenever the registry moves."""

from __future__ import annotations

from typing import Any

from prefect import task

from modelcycle.registry import ModelVersion, Registry
from modelcycle.reports import card_facts, read_card_facts, registry_view, render_card
from modelcycle.utils import json_ready
from tasks.common import TASK_OPTIONS


@task(name="gather-card-facts", **TASK_OPTIONS)
def gather_card_facts(**facts: Any) -> dict[str, Any]:
    """Every fact the card shows, JSON-ready; saved as card.json in the run folder."""
    return json_ready(card_facts(**facts))


@task(name="render-card", **TASK_OPTIONS)
def render_training_card(facts: dict[str, Any]) -> str:
    """The card as written into the run folder, before the registry numbers the version."""
    return render_card(facts)


@task(name="render-version-card", **TASK_OPTIONS)
def render_version_card(registry_url: str, version: ModelVersion) -> str:
    """The card with the version number, status and audit entries the registry holds now."""
    registry = Registry(registry_url)
    record = registry.get_version(version.model_name, version.version)
    audit = registry.audit_log(version.model_name)
    return render_card(read_card_facts(record), registry_view(record, audit))
