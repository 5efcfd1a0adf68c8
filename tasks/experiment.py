"""Experiment steps: read the running experiment and its settings, look at the logged traffic,
and record each look and ending in the registry (audited with its evidence) and the UI."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from modelcycle.config import Experiment as ExperimentConfig
from modelcycle.config import TaskType, load_config, parse_config
from modelcycle.registry import (
    Experiment,
    ExperimentMode,
    ExperimentMove,
    ExperimentStatus,
    ModelVersion,
    Rollouts,
    open_run,
)
from modelcycle.serving import Analysis, analyse, read_feedback, read_predictions
from tasks.common import TASK_OPTIONS


@task(name="start-shadow", **TASK_OPTIONS)
def start_shadow(registry_url: str, version: ModelVersion, actor: str) -> ExperimentMove:
    """The gate policy `after_pass: shadow`: the passed candidate meets live traffic beside
    the champion before anything promotes it."""
    move = Rollouts(registry_url).start(
        version.model_name,
        version.version,
        mode=ExperimentMode.SHADOW,
        actor=actor,
        reason="passed the gate; gate.after_pass is shadow: the experiment flow decides",
    )
    get_run_logger().info(
        "%s v%d in shadow beside champion v%d (experiment %d)",
        version.model_name,
        version.version,
        move.experiment.champion,
        move.experiment.id,
    )
    return move


@task(name="read-running-experiment", **TASK_OPTIONS)
def read_running_experiment(registry_url: str, model_name: str) -> Experiment | None:
    rollouts = Rollouts(registry_url)
    rollouts.registry.get_model(model_name)  # an unknown model fails here, by name
    return rollouts.running(model_name)


@task(name="check-champion-unchanged", **TASK_OPTIONS)
def champion_changed(registry_url: str, experiment: Experiment) -> str | None:
    """Why the experiment can no longer be judged, if the champion moved outside it."""
    champion = Rollouts(registry_url).registry.champion(experiment.model_name)
    now = champion.version if champion else None
    if now == experiment.champion:
        return None
    return (
        f"the champion changed from v{experiment.champion} to "
        f"{'none' if now is None else f'v{now}'} outside the experiment; it no longer compares "
        "what it started with"
    )


@task(name="experiment-settings", **TASK_OPTIONS)
def experiment_settings(
    registry_url: str, experiment: Experiment, config_path: str | None
) -> tuple[ExperimentConfig, TaskType]:
    """The `experiment:` section of `config_path`, else the one recorded with the challenger
    (its run manifest, anchored by the registry)."""
    if config_path:
        config = load_config(config_path)
    else:
        record = Rollouts(registry_url).registry.get_version(
            experiment.model_name, experiment.challenger
        )
        config = parse_config(
            open_run(record).manifest["config"],
            f"{record.model_name} v{record.version} manifest config",
        )
    return config.experiment, config.task


@task(name="look-at-traffic", **TASK_OPTIONS)
def look_at_traffic(
    log_root: str, experiment: Experiment, settings: ExperimentConfig, task_type: TaskType
) -> Analysis:
    predictions = read_predictions(log_root, experiment.model_name, since=experiment.started_at)
    feedback = read_feedback(log_root, experiment.model_name, since=experiment.started_at)
    analysis = analyse(experiment, settings, task_type, predictions, feedback)
    get_run_logger().info(
        "%s experiment %d %s", experiment.model_name, experiment.id, analysis.summary
    )
    return analysis


@task(name="record-look", **TASK_OPTIONS)
def record_look(
    registry_url: str, experiment: Experiment, analysis: Analysis, actor: str
) -> ExperimentMove:
    return Rollouts(registry_url).record_look(
        experiment.id, evidence=analysis.evidence(), actor=actor, reason=analysis.summary
    )


@task(name="finish-experiment", **TASK_OPTIONS)
def finish_experiment(
    registry_url: str,
    experiment: Experiment,
    outcome: ExperimentStatus,
    evidence: dict[str, Any],
    actor: str,
    reason: str,
) -> ExperimentMove:
    move = Rollouts(registry_url).finish(
        experiment.id, outcome, evidence=evidence, actor=actor, reason=reason
    )
    get_run_logger().info(
        "%s experiment %d %s: %s", experiment.model_name, experiment.id, outcome.value, reason
    )
    return move


@task(name="publish-experiment-report", **TASK_OPTIONS)
def publish_experiment_report(
    model_name: str,
    experiment: Experiment | None,
    evidence: dict[str, Any],
    entries: list[int],
) -> dict[str, Any]:
    """The look as a markdown artifact (key `<model>-experiment`): decision, interval, looks,
    guardrails, and the audit entries that recorded it."""
    lines = [f"# {model_name}: experiment"]
    if experiment is None:
        lines += ["", evidence["summary"]]
    else:
        lines += [
            "",
            f"- experiment {experiment.id}: challenger **v{experiment.challenger}** "
            f"({experiment.mode.value}"
            + (f", {experiment.share:.0%} of traffic" if experiment.share else "")
            + f") against champion v{experiment.champion}, "
            f"started {experiment.started_at:%Y-%m-%d %H:%M} UTC",
            f"- decision: **{evidence.get('outcome', '-')}** - {evidence.get('reason', '')}",
            f"- {evidence['summary']}",
            f"- audit entries: {', '.join(f'#{e}' for e in entries) or '-'}",
        ]
        if evidence.get("guardrails"):
            lines += ["", "| guardrail | value | limit | breached |", "|---|---:|---:|---|"]
            for name, g in evidence["guardrails"].items():
                value = "not judged yet" if g["value"] is None else f"{g['value']:.4g}"
                lines.append(
                    f"| {name} | {value} | {g['limit']:g} | {'yes' if g['breached'] else 'no'} |"
                )
        if evidence.get("rows"):
            lines += ["", "| rows | count |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in evidence["rows"].items()]
    create_markdown_artifact(
        key=f"{model_name}-experiment",
        markdown="\n".join(lines),
        description=f"experiment look for {model_name}",
    )
    return {**evidence, "audit_entries": entries}
