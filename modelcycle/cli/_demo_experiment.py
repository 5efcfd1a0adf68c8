"""The demo's experiment chapter: the rolled-back challenger meets live traffic again, first in
shadow, then as a canary, and the `experiment` flow decides with its evidence shown.

Run inside the serving chapter, against the demo's own service, after the rollback (v1
champion, v2 archived) and before v2 is retired; whatever the experiment decides, the
champion the rest of the demo monitors is v1 again when the chapter ends, and the audit log
keeps every look and decision.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelcycle.cli._console import console, embedded_server_settings, print_table
from modelcycle.cli._demo import (
    DEMO_CLIENTS,
    DEMO_POLL_SECONDS,
    FEEDBACK_CHUNK,
    _Answer,
    _post_rows,
    _Service,
    _survey_year,
)
from modelcycle.errors import ModelcycleError

# (survey year replayed, how the challenger meets it, canary share)
EXPERIMENT_LOOKS = ((2010, "shadow", 0.0), (2012, "canary", 0.5))


def experiment_chapter(service: _Service, model: str, config: str, challenger: int) -> None:
    from rich.table import Table

    from modelcycle.registry import ExperimentStatus, Rollouts
    from modelcycle.settings import get_settings

    console.rule(
        f"5. an online experiment: v{challenger} in shadow, then as a canary; the experiment "
        "flow decides"
    )
    rollouts = Rollouts(get_settings().registry_url)
    for year, mode, share in EXPERIMENT_LOOKS:
        moved = rollouts.start(
            model, challenger, mode=mode, share=share, actor="demo", reason=f"demo: {mode}"
        )
        how = "scores every request in shadow" if mode == "shadow" else f"answers {share:.0%}"
        console.print(
            f"+ modelcycle models {mode} {model} {challenger}"
            + (f" --share {share:g}" if share else "")
            + f"   # v{challenger} {how} beside champion v{moved.experiment.champion} "
            f"(experiment {moved.experiment.id})",
            highlight=False,
        )
        time.sleep(2.5 * DEMO_POLL_SECONDS)  # the worker polls the registry and loads v2
        rows, labels = _survey_year(config, year)
        answers = _replay_year(service, model, rows)
        by_version: dict[int, int] = {}
        for answer in answers:
            by_version[answer.version or 0] = by_version.get(answer.version or 0, 0) + 1
        answered = ", ".join(f"v{v} {n:,}" for v, n in sorted(by_version.items()))
        shadowed = _wait_for_shadow(service, model, answers) if mode == "shadow" else 0
        _send_feedback(service, model, answers, labels)
        console.print(
            f"{year}: {len(answers):,} respondents answered ({answered})"
            + (f"; {shadowed:,} shadow rows of v{challenger} logged" if mode == "shadow" else "")
            + "; their true labels sent back",
            highlight=False,
        )
        result = _run_experiment_flow(model)
        console.print(result["summary"], highlight=False)
        table = Table("guardrail", "value", "limit", "breached")
        for name, g in result.get("guardrails", {}).items():
            value = "-" if g["value"] is None else f"{g['value']:.3f}"
            table.add_row(name, value, f"{g['limit']:g}", "yes" if g["breached"] else "no")
        print_table(table)
        if result["outcome"] != "continue":
            break
    running = rollouts.running(model)
    if running is not None:
        rollouts.finish(
            running.id,
            ExperimentStatus.STOPPED,
            evidence=running.last_evidence,
            actor="demo",
            reason="demo: no decision within the demo's two looks; the champion keeps all traffic",
        )
        console.print(
            f"no decision after {running.looks} looks: the test would keep looking (it stays "
            "valid however often it does); the demo stops the experiment here",
            highlight=False,
        )
    champion = rollouts.registry.champion(model)
    if champion is not None and champion.version == challenger:
        from modelcycle.cli._models import run_governance_flow

        run_governance_flow(
            "rollback",
            model_name=model,
            reason="demo: back to v1 so the story continues; the experiment's promotion stays "
            "in the audit log",
            actor="demo",
        )
        console.print(
            f"the experiment promoted v{challenger}; rolled back to v1 for the rest of the demo",
            highlight=False,
        )


def _replay_year(service: _Service, model: str, rows: list[dict[str, Any]]) -> list[_Answer]:
    local = threading.local()

    def send(row: dict[str, Any]) -> _Answer:
        if not hasattr(local, "client"):
            local.client = service.client()
        return _post_rows(local.client, model, [row])

    with ThreadPoolExecutor(DEMO_CLIENTS) as pool:
        answers = list(pool.map(send, rows))
    failed = [a for a in answers if a.status != 200]
    if failed:
        raise ModelcycleError(
            f"{len(failed)} of {len(answers)} requests failed (first: HTTP {failed[0].status})"
        )
    return answers


def _wait_for_shadow(service: _Service, model: str, answers: list[_Answer]) -> int:
    """Shadow rows are written after the answers; wait (briefly) until they are all logged."""
    from modelcycle.serving import SHADOW_SUFFIX, read_predictions

    wanted = {i + SHADOW_SUFFIX for a in answers for i in a.ids}
    found = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = int(read_predictions(service.log_root, model)["id"].isin(wanted).sum())
        if found == len(wanted):
            break
        time.sleep(0.5)
    return found


def _send_feedback(
    service: _Service, model: str, answers: list[_Answer], labels: list[Any]
) -> None:
    items = [{"id": a.ids[0], "label": y} for a, y in zip(answers, labels, strict=True)]
    with service.client() as client:
        for start in range(0, len(items), FEEDBACK_CHUNK):
            response = client.post(
                f"/v1/models/{model}/feedback", json=items[start : start + FEEDBACK_CHUNK]
            )
            if response.status_code != 200:
                raise ModelcycleError(f"feedback: HTTP {response.status_code}: {response.text}")


def _run_experiment_flow(model: str) -> dict[str, Any]:
    from modelcycle.cli._console import check_configured_server
    from modelcycle.cli._runtime import prepare_prefect_env

    check_configured_server()
    prepare_prefect_env()
    from flows.experiment import experiment

    with embedded_server_settings():
        return experiment(model_name=model, actor="demo")
