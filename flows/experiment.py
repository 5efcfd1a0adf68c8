"""The experiment flow: one look at a running shadow or canary experiment.

read the running experiment -> still the champion it started with? -> the settings recorded
with the challenger -> the logged traffic and feedback -> sequential test and guardrails ->
record the look -> promote (through the promotion flow), stop, or continue -> artifact.

Scheduled (prefect.yaml) and on demand (`modelcycle experiment NAME`); the test stays valid
however often it looks, so the schedule can be as tight as the traffic warrants.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.governance import promotion
from modelcycle.registry import ExperimentStatus
from modelcycle.serving import read_settings
from modelcycle.settings import get_settings
from tasks.experiment import (
    champion_changed,
    experiment_settings,
    finish_experiment,
    look_at_traffic,
    publish_experiment_report,
    read_running_experiment,
    record_look,
)


@flow(
    name="experiment",
    description="Compare the challenger in shadow or canary with the champion; decide.",
)
def experiment(
    model_name: str, config_path: str | None = None, actor: str = "experiment-flow"
) -> dict[str, Any]:
    """Look once at the running experiment of `model_name` and act on what the look decides.

    Args:
        model_name: The model whose running experiment is judged.
        config_path: Take the `experiment:` settings from this config instead of the ones
            recorded with the challenger.
        actor: Who is recorded in the audit log for each look and decision.
    """
    registry_url = get_settings().registry_url

    # read: what runs, and whether it still compares what it started with
    running = read_running_experiment(registry_url, model_name)
    if running is None:
        summary = f"{model_name}: no running experiment"
        return publish_experiment_report(model_name, None, {"summary": summary}, [])
    stale = champion_changed(registry_url, running)
    if stale is not None:
        evidence = {"outcome": "stop", "reason": stale, "summary": f"stopped: {stale}"}
        ended = finish_experiment(
            registry_url, running, ExperimentStatus.STOPPED, evidence, actor, stale
        )
        return publish_experiment_report(model_name, running, evidence, [ended.entry.id])

    # look: the sequential test and the guardrails on the logged traffic
    settings, task_type = experiment_settings(registry_url, running, config_path)
    analysis = look_at_traffic(read_settings().resolved_log_root, running, settings, task_type)
    looked = record_look(registry_url, running, analysis, actor)
    evidence, entries = analysis.evidence(), [looked.entry.id]

    # act: promote through the governance flow, or stop; the champion keeps all traffic
    if analysis.outcome == "promote":
        promoted = promotion(
            model_name=model_name,
            version=running.challenger,
            reason=f"experiment {running.id}: {analysis.summary}",
            actor=f"experiment:{running.id}",
        )
        entries.append(promoted["id"])
        ended = finish_experiment(
            registry_url, running, ExperimentStatus.PROMOTED, evidence, actor, analysis.reason
        )
        entries.append(ended.entry.id)
    elif analysis.outcome == "stop":
        ended = finish_experiment(
            registry_url, running, ExperimentStatus.STOPPED, evidence, actor, analysis.reason
        )
        entries.append(ended.entry.id)
    return publish_experiment_report(model_name, running, evidence, entries)


if __name__ == "__main__":
    from flows._deployment import deployment_parameters

    experiment(**deployment_parameters("experiment"))
