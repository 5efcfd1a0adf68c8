"""`modelcycle demo`: the whole loop on the demo model, told through the other commands.

The only place that knows the demo's config, model and survey years; the generic commands it
calls are given them explicitly. The serving chapter runs `modelcycle serve` as a child
process, as a user would, and talks to it over HTTP only.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import Progress, TextColumn

from modelcycle.cli._console import (
    check_configured_server,
    console,
    embedded_server_settings,
    fail,
    open_registry,
    print_table,
)
from modelcycle.cli._incidents import list_incidents
from modelcycle.cli._models import audit, card_text, list_models, run_governance_flow
from modelcycle.cli._monitor import print_monitoring_outcome, run_monitoring
from modelcycle.cli._train import print_training_outcome, run_training
from modelcycle.config import TrainingMode
from modelcycle.errors import ModelcycleError

DEMO_CONFIG = "configs/demo.yaml"
# Survey years the demo's second run fine-tunes on; later years stay unseen for monitoring.
DEMO_FINE_TUNE_YEARS = (2002.0, 2006.0)
# Survey years kept back from training; the GSS ran every two years then.
DEMO_WINDOW_YEARS = [2008, 2010, 2012, 2014, 2016, 2018]
# The first of them is replayed as traffic to the prediction service, one respondent a request
# from DEMO_CLIENTS clients at once.
DEMO_TRAFFIC_YEAR = DEMO_WINDOW_YEARS[0]
DEMO_CLIENTS = 8
# The demo's service re-reads the champion alias every second, so the live rollback shows at
# once; the service's own default is in modelcycle/serving's settings.
DEMO_POLL_SECONDS = 1.0
SERVICE_START_SECONDS = 120.0
SWITCH_SECONDS = 30.0
FEEDBACK_CHUNK = 500
# The loop: two years of production with their labels, the second held out by the time split
# of the retraining on the log; then the year after, answered by whatever the gate decided.
DEMO_LOOP_YEARS = (2014, 2016)
DEMO_NEXT_YEAR = 2018
# Its monitoring asks a drift event for a retraining on the labelled log (retrain_data: log).
DEMO_LOOP_CONFIG = "configs/demo-loop.yaml"


def demo(
    config: Annotated[str, typer.Option(help="Demo pipeline config.")] = DEMO_CONFIG,
    serve: Annotated[
        bool,
        typer.Option(
            help=f"Serve the champion: replay {DEMO_TRAFFIC_YEAR} as traffic, send the true "
            "labels back, roll back while it answers."
        ),
    ] = True,
    monitor: Annotated[
        bool, typer.Option(help="Then monitor the unseen years 2008-2018, one window each.")
    ] = True,
    loop: Annotated[
        bool,
        typer.Option(
            help=f"Then close the loop: serve {' and '.join(map(str, DEMO_LOOP_YEARS))} with "
            f"their labels, fine-tune on the labelled log, serve {DEMO_NEXT_YEAR} (needs serve)."
        ),
    ] = True,
) -> None:
    """The lifecycle on the demo model: train, judge a fine-tuned challenger with every gate
    check, serve the champion and roll back while it answers, retire, show the audit log and a
    model card per version, then monitor the unseen years."""
    try:
        console.rule("1. train from scratch on 1974-2000")
        first = run_training(config, TrainingMode.scratch, None)
        print_training_outcome(first)
        start, end = DEMO_FINE_TUNE_YEARS
        console.rule(f"2. fine-tune the champion on {start:.0f}-{end:.0f}, judged by the gate")
        second = run_training(
            config, TrainingMode.fine_tune, {"time_range": {"start": start, "end": end}}
        )
        print_training_outcome(second)
        model = second["model"]
        promoted = second["status"] == "champion"
        if serve:
            _serving_chapter(model, config, second["version"], promoted)
        else:
            if promoted:
                console.rule("3. roll back to the first champion, then retire the challenger")
                _roll_back(model)
            else:
                console.rule("3. the challenger was rejected; retire it")
            _retire(model, second["version"])
    except ModelcycleError as exc:
        fail(str(exc))
    console.rule("audit log")
    audit(model, as_json=False)
    console.rule("registry")
    list_models(as_json=False)
    for outcome in (first, second):
        path = _write_card(model, outcome["version"])
        console.print(f"model card of v{outcome['version']}: {path}", highlight=False)
    console.print(f"print one with: modelcycle models card {model} VERSION", highlight=False)
    if monitor:
        try:
            _monitor_unseen_years(model)
        except ModelcycleError as exc:
            fail(str(exc))
    if loop and serve:
        try:
            _loop_chapter(model, config)
        except ModelcycleError as exc:
            fail(str(exc))
    try:
        _auditor_chapter(model)
    except ModelcycleError as exc:
        fail(str(exc))


def _roll_back(model: str) -> None:
    run_governance_flow(
        "rollback",
        model_name=model,
        reason="demo: go back to the champion trained on 1974-2000",
        actor="demo",
    )


def _retire(model: str, version: int) -> None:
    run_governance_flow(
        "retirement",
        model_name=model,
        version=version,
        reason="demo: fine-tuned on 2002-2006 only; superseded",
        actor="demo",
    )


def _write_card(name: str, version: int) -> Path:
    """The card as of now, next to the registry (the run folder keeps the training-time one)."""
    from modelcycle.settings import get_settings

    folder = get_settings().home / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-v{version}.md"
    path.write_text(card_text(name, version), encoding="utf-8")
    return path


def _auditor_chapter(model: str) -> None:
    """Answer an auditor from what the demo recorded: trace one served prediction, score the
    champion on the ML Test Score, write its technical documentation and ML-BOM."""
    import json

    from modelcycle.cli._docs import version_records
    from modelcycle.cli._trace import log_root
    from modelcycle.records import trace_prediction
    from modelcycle.reports import (
        cyclonedx_bom,
        ml_test_score,
        render_html,
        render_markdown,
        technical_documentation,
    )
    from modelcycle.serving import read_predictions
    from modelcycle.settings import get_settings

    console.rule("answer an auditor from the records")
    registry = open_registry()
    logged = read_predictions(log_root(), model)
    if len(logged):
        first = str(logged["id"].iloc[0])
        result = trace_prediction(first, registry, log_root(), get_settings().data_dir)
        hops = ", ".join(f"{h.name} {h.status.value}" for h in result.hops)
        console.print(f"trace {first} ({model} v{result.version}): {hops}", highlight=False)
        console.print(f"the whole trace: modelcycle trace {first}", highlight=False)
    champion = registry.champion(model) or registry.list_versions(model)[-1]
    records = version_records(model, champion.version)
    score = ml_test_score(records)
    sections = ", ".join(f"{k} {v:g}" for k, v in score.sections.items())
    console.print(
        f"ML Test Score of v{champion.version}: {score.final:g} ({sections}); every test with "
        f"its evidence: modelcycle models score {model}",
        highlight=False,
    )
    folder = get_settings().home / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    doc = technical_documentation(records, score)
    stem = folder / f"{model}-v{champion.version}"
    stem.with_suffix(".md").write_text(render_markdown(doc), encoding="utf-8")
    stem.with_suffix(".html").write_text(render_html(doc), encoding="utf-8")
    bom = stem.parent / f"{stem.name}.cdx.json"
    bom.write_text(json.dumps(cyclonedx_bom(records, score), indent=2) + "\n", encoding="utf-8")
    console.print(
        f"technical documentation: {stem}.md and .html; CycloneDX ML-BOM: {bom}", highlight=False
    )


def _monitor_unseen_years(model: str) -> None:
    """The demo's last act: the unseen survey years arrive one window at a time."""
    from modelcycle.data import write_year_windows
    from modelcycle.settings import get_settings

    paths = write_year_windows(get_settings().data_dir, DEMO_WINDOW_YEARS)
    for path in paths:
        console.rule(f"monitor {path.name}")
        print_monitoring_outcome(run_monitoring(model, str(path)))
    console.rule("incidents")
    list_incidents(as_json=False)


# ---------------------------------------------------------------------------------------------
# The serving chapter
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Service:
    """The demo's own prediction service: where it answers, its token and its log."""

    url: str
    token: str
    log_root: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token}"}
        )


@dataclass(frozen=True)
class _Answer:
    """One request as the client saw it: when it returned (epoch seconds, to compare with the
    registry's audit times), its status, who answered."""

    at: float
    status: int
    version: int | None
    ids: tuple[str, ...]
    seconds: float


def _serving_chapter(model: str, config: str, challenger: int, promoted: bool) -> None:
    """Serve the champion, replay an unseen year, send the labels back; then roll back while
    the service answers (when the challenger won) and retire the challenger."""
    champion = open_registry().champion(model)
    if champion is None:
        raise ModelcycleError(f"{model} has no champion to serve")
    console.rule(
        f"3. serve the champion (v{champion.version}): {DEMO_TRAFFIC_YEAR} as traffic, "
        "then the true labels"
    )
    rows, labels = _survey_year(config, DEMO_TRAFFIC_YEAR)
    with _prediction_service(model) as service:
        answers = _replay(service, model, rows)
        _report_traffic(service, model, answers, labels)
        if promoted:
            console.rule("4. roll back while the service answers, then retire the challenger")
            _live_rollback(service, model, champion.version, rows)
            experiment_chapter(service, model, config, challenger)
            console.rule("6. retire the challenger")
        else:
            console.rule("4. the challenger was rejected; retire it")
        _retire(model, challenger)
        _show_retired_route(service, model, challenger, rows[0])
        console.print("stopping the service")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _prediction_service(model: str) -> Iterator[_Service]:
    """`modelcycle serve` on a free loopback port with a token made for this run; its process
    group is stopped when the chapter ends, however it ends."""
    from modelcycle.settings import get_settings

    home = get_settings().home
    folder = home / "demo-service"
    folder.mkdir(parents=True, exist_ok=True)
    token, port = secrets.token_urlsafe(32), _free_port()
    env = {
        **os.environ,
        "MODELCYCLE_SERVE_TOKENS": token,
        "MODELCYCLE_SERVE_POLL_SECONDS": str(DEMO_POLL_SECONDS),
    }
    # One worker: each worker imports scikit-learn and verifies the model on its own, and the
    # demo's process and Prefect's temporary server already share the cores.
    args = ["serve", "--model", model, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log_path = folder / "service.log"
    console.print(
        f"+ MODELCYCLE_SERVE_TOKENS=<a new token> MODELCYCLE_SERVE_POLL_SECONDS="
        f"{DEMO_POLL_SECONDS:g} modelcycle {' '.join(args)}   # log: {log_path}",
        highlight=False,
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from modelcycle.cli import main; main()", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its workers stop with it
        )
    service = _Service(f"http://127.0.0.1:{port}", token, str(home / "predictions"))
    try:
        _wait_ready(service, process, log_path)
        yield service
    finally:
        _stop(process)


def _wait_ready(service: _Service, process: subprocess.Popen[bytes], log_path: Path) -> None:
    began = time.monotonic()
    with httpx.Client(base_url=service.url, timeout=5) as client:
        while time.monotonic() - began < SERVICE_START_SECONDS:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise ModelcycleError(
                    f"modelcycle serve exited with {process.returncode}; {log_path} ends:\n"
                    + "\n".join(tail)
                )
            with suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    console.print(
                        f"ready at {service.url} after {time.monotonic() - began:.1f} s",
                        highlight=False,
                    )
                    return
            time.sleep(0.2)
    raise ModelcycleError(
        f"modelcycle serve was not ready within {SERVICE_START_SECONDS:.0f} s; see {log_path}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the service's process group (it drains and seals its log), SIGKILL late."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _survey_year(
    config_path: str, year: int, context: bool = False
) -> tuple[list[dict[str, Any]], list[Any]]:
    """The model's inputs (missing values as null) and the true labels of one survey year;
    with `context`, also the columns the service logs beside them (year, gender), which a
    retraining on the log needs for its time split and its fairness check."""
    import pandas as pd

    from modelcycle.config import load_config
    from modelcycle.data import ensure_demo_file
    from modelcycle.settings import get_settings

    config = load_config(config_path)
    table = pd.read_parquet(ensure_demo_file(get_settings().data_dir))
    year_rows = table.loc[table[config.time_column] == year]
    columns = [*config.features.numeric, *config.features.categorical]
    if context:
        columns += [config.time_column or "", *config.sensitive_columns]
    features = year_rows[columns]
    records = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    return records, [label.item() for label in year_rows[config.target].to_numpy()]


def _post_rows(
    client: httpx.Client, model: str, rows: list[dict[str, Any]], version: int | None = None
) -> _Answer:
    path = f"/v1/models/{model}/predict"
    if version is not None:
        path = f"/v1/models/{model}/versions/{version}/predict"
    began = time.perf_counter()
    try:
        response = client.post(path, json={"rows": rows})
    except httpx.HTTPError:
        return _Answer(time.time(), 0, None, (), time.perf_counter() - began)
    seconds = time.perf_counter() - began
    if response.status_code != 200:
        return _Answer(time.time(), response.status_code, None, (), seconds)
    body = response.json()
    ids = tuple(p["id"] for p in body["predictions"])
    return _Answer(time.time(), 200, body["version"], ids, seconds)


def _replay(
    service: _Service, model: str, rows: list[dict[str, Any]], title: str = ""
) -> list[_Answer]:
    """Each respondent as one request, DEMO_CLIENTS at a time, behind a progress bar."""
    local = threading.local()

    def send(row: dict[str, Any]) -> _Answer:
        if not hasattr(local, "client"):
            local.client = service.client()
        return _post_rows(local.client, model, [row])

    answers: list[_Answer] = []
    columns = (*Progress.get_default_columns(), TextColumn("{task.fields[rate]}"))
    with (
        Progress(*columns, console=console) as progress,
        ThreadPoolExecutor(DEMO_CLIENTS) as pool,
    ):
        title = title or f"{DEMO_TRAFFIC_YEAR} as traffic"
        task = progress.add_task(title, total=len(rows), rate="")
        began = time.monotonic()
        for answer in pool.map(send, rows):
            answers.append(answer)
            rate = len(answers) / max(time.monotonic() - began, 1e-9)
            progress.update(task, advance=1, rate=f"{rate:.0f} requests/s")
    failed = [a for a in answers if a.status != 200]
    if failed:
        raise ModelcycleError(
            f"{len(failed)} of {len(answers)} replayed requests failed (first: HTTP "
            f"{failed[0].status}); see the service log"
        )
    return answers


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _report_traffic(
    service: _Service, model: str, answers: list[_Answer], labels: list[Any]
) -> None:
    """Latency as the clients saw it, the labels sent back, and what the log holds of both."""
    from modelcycle.serving import read_feedback, read_predictions

    versions = sorted({a.version for a in answers if a.version is not None})
    latencies = [a.seconds * 1000 for a in answers]
    console.print(
        f"{len(answers):,} respondents answered by "
        f"{', '.join(f'v{v}' for v in versions)}: p50 {_percentile(latencies, 0.5):.1f} ms, "
        f"p99 {_percentile(latencies, 0.99):.1f} ms ({DEMO_CLIENTS} clients, one row a "
        "request, measured by the client)"
    )
    recorded = _send_feedback(service, model, answers, labels)
    console.print(f"feedback: {recorded:,} true labels sent back, by prediction id")
    ids = {i for a in answers for i in a.ids}
    logged = read_predictions(service.log_root, model)
    feedback = read_feedback(service.log_root, model)
    console.print(
        f"prediction log {service.log_root}: {int(logged['id'].isin(ids).sum()):,} of these "
        f"{len(ids):,} predictions, {int(feedback['id'].isin(ids).sum()):,} labels joined by "
        f"id ({len(logged):,} predictions in the log in all)",
        highlight=False,
    )


def _live_rollback(service: _Service, model: str, serving: int, rows: list[dict[str, Any]]) -> None:
    """Roll back through the governance flow while a client keeps asking; show when the
    answering version changed, counted from the audit entry of the alias move, and that no
    request failed on the way."""
    stop = threading.Event()
    answers: list[_Answer] = []

    def keep_asking() -> None:
        with service.client() as client:
            i = 0
            while not stop.is_set():
                answers.append(_post_rows(client, model, [rows[i % len(rows)]]))
                i += 1

    asker = threading.Thread(target=keep_asking, name="demo-traffic", daemon=True)
    asker.start()
    try:
        _roll_back(model)
        registry = open_registry()
        champion = registry.champion(model)
        target = champion.version if champion is not None else None
        moved = next(e for e in reversed(registry.audit_log(model)) if e.action == "rollback")
        moved_at = moved.at.timestamp()
        deadline = time.time() + SWITCH_SECONDS
        while time.time() < deadline and not any(a.version == target for a in answers[-20:]):
            time.sleep(0.1)
        time.sleep(0.5)  # a little traffic after the switch, to show it holds
    finally:
        stop.set()
        asker.join(timeout=SWITCH_SECONDS)
    failed = sum(a.status != 200 for a in answers)
    old = [a.at - moved_at for a in answers if a.version == serving]
    new = [a.at - moved_at for a in answers if a.version == target]
    if not new:
        raise ModelcycleError(
            f"the service still answered with v{serving} {SWITCH_SECONDS:.0f} s after the "
            f"rollback to v{target}"
        )
    until = f"until {max(old):+.1f} s" if old else "no more"
    console.print(
        f"{len(answers):,} requests while rolling back, {failed} failed: v{serving} answered "
        f"{until}, v{target} from {min(new):+.1f} s after the rollback flow moved the champion "
        f"alias (the service re-reads it every {DEMO_POLL_SECONDS:g} s)"
    )


def _show_retired_route(service: _Service, model: str, version: int, row: dict[str, Any]) -> None:
    with service.client() as client:
        answer = _post_rows(client, model, [row], version=version)
    console.print(
        f"POST /v1/models/{model}/versions/{version}/predict now answers HTTP {answer.status} "
        "(retired)"
    )


# -- chapter 5: an online experiment ------------------------------------------------------

# (survey year replayed, how the challenger meets it, canary share)
# The canary keeps running over three years: the interval narrows look by look, and the test
# stays valid however many looks it takes.
EXPERIMENT_LOOKS = (
    (2010, "shadow", 0.0),
    (2012, "canary", 0.5),
    (2014, "canary", 0.5),
    (2016, "canary", 0.5),
)


def experiment_chapter(service: _Service, model: str, config: str, challenger: int) -> None:
    """The rolled-back challenger meets live traffic again, first in shadow, then as a canary,
    and the `experiment` flow decides with its evidence shown. Runs after the rollback (v1
    champion, v2 archived) and before v2 is retired; whatever the experiment decides, the
    champion the monitoring chapters watch is v1 again when it ends, and the audit log keeps
    every look and decision."""
    from rich.table import Table

    from modelcycle.registry import ExperimentStatus, Rollouts
    from modelcycle.settings import get_settings

    console.rule(
        f"5. an online experiment: v{challenger} in shadow, then as a canary; the experiment "
        "flow decides"
    )
    rollouts = Rollouts(get_settings().registry_url)
    for year, mode, share in EXPERIMENT_LOOKS:
        running = rollouts.running(model)
        if running is None or running.mode.value != mode:
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
            time.sleep(2.5 * DEMO_POLL_SECONDS)  # the worker polls the registry, loads v2
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
            reason="demo: no decision within the demo's looks; the champion keeps all traffic",
        )
        console.print(
            f"no decision after {running.looks} looks: the test would keep looking (it stays "
            "valid however often it does); the demo stops the experiment here",
            highlight=False,
        )
    champion = rollouts.registry.champion(model)
    if champion is not None and champion.version == challenger:
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


def _send_feedback(service: _Service, model: str, answers: list[_Answer], labels: list[Any]) -> int:
    """The true outcomes, by prediction id, in chunks; how many the service recorded."""
    items = [{"id": a.ids[0], "label": y} for a, y in zip(answers, labels, strict=True)]
    recorded = 0
    with service.client() as client:
        for start in range(0, len(items), FEEDBACK_CHUNK):
            response = client.post(
                f"/v1/models/{model}/feedback", json=items[start : start + FEEDBACK_CHUNK]
            )
            if response.status_code != 200:
                raise ModelcycleError(f"feedback: HTTP {response.status_code}: {response.text}")
            recorded += int(response.json()["recorded"])
    return recorded


def _run_experiment_flow(model: str) -> dict[str, Any]:
    from modelcycle.cli._runtime import prepare_prefect_env

    check_configured_server()
    prepare_prefect_env()
    from flows.experiment import experiment

    with embedded_server_settings():
        return experiment(model_name=model, actor="demo")


# ---------------------------------------------------------------------------------------------
# The loop: production traffic and its labels become the next version's training data
# ---------------------------------------------------------------------------------------------


def _loop_chapter(model: str, config: str) -> None:
    """Serve two unseen years with their labels, monitor what the service answered, and let the
    drift event's payload drive the retraining: a fine-tune of the champion on the labelled
    log range that drifted, judged on the later year by the gate; then serve the year after:
    did quality come back?"""
    from datetime import UTC, datetime

    first, second = DEMO_LOOP_YEARS
    console.rule(f"7. close the loop: {first} and {second} as traffic, their labels sent back")
    since = datetime.now(UTC).replace(microsecond=0)
    before = _champion_version(model)
    with _prediction_service(model) as service:
        for year in DEMO_LOOP_YEARS:
            rows, labels = _survey_year(config, year, context=True)
            answers = _replay(service, model, rows, f"{year} as traffic")
            _send_labels_back(service, model, answers, labels)
    console.print("stopping the service (its log segments are sealed, ready to be read)")
    _print_log_quality(model, service.log_root, since, "champion")
    console.rule(f"monitoring on the prediction log: {first} and {second} as they were answered")
    console.print(
        f"+ modelcycle monitor --model {model} --log --since {since.isoformat()} "
        f"--thresholds {DEMO_LOOP_CONFIG}   # monitoring.retrain_data: log",
        highlight=False,
    )
    monitored = run_monitoring(model, None, source="log", since=since, config_path=DEMO_LOOP_CONFIG)
    print_monitoring_outcome(monitored)
    event = monitored.get("event")
    if event is None:
        console.print(f"no drift on the log ({monitored['status']}): nothing asks for a retraining")
        return

    mode, overrides = TrainingMode(event["retrain_mode"]), event["retrain_overrides"]
    console.rule(
        f"8. the drift event retrains: {mode.value} v{before} on the labelled log, judged on "
        f"{second} by the gate"
    )
    console.print(
        f"event {monitored['event_id']} (modelcycle.model.drift-detected) asks the retraining "
        f"deployment for mode {mode.value} and overrides {overrides}; in service mode its "
        "trigger starts that run, here the demo starts it with the same parameters",
        highlight=False,
    )
    outcome = run_training(event["config_path"], mode, overrides)
    print_training_outcome(outcome)
    _print_log_lineage(model, outcome["version"])
    after = _champion_version(model)

    console.rule(f"9. {DEMO_NEXT_YEAR}: the service answers with v{after}; did quality recover?")
    next_since = datetime.now(UTC).replace(microsecond=0)
    rows, labels = _survey_year(config, DEMO_NEXT_YEAR, context=True)
    with _prediction_service(model) as service:
        answers = _replay(service, model, rows, f"{DEMO_NEXT_YEAR} as traffic")
        _send_labels_back(service, model, answers, labels)
        pinned = _replay_pinned(service, model, rows, before, labels) if after != before else None
    _print_log_quality(model, service.log_root, next_since, "champion")
    if pinned is not None:
        console.print(
            f"the same {len(rows):,} respondents asked of v{before} (pinned route): ROC AUC "
            f"{pinned:.4f}",
            highlight=False,
        )
    elif outcome["status"] != "champion":
        console.print(f"the gate kept v{before}: the candidate was {outcome['status']}")


def _champion_version(model: str) -> int:
    champion = open_registry().champion(model)
    if champion is None:
        raise ModelcycleError(f"{model} has no champion to serve")
    return champion.version


def _send_labels_back(
    service: _Service, model: str, answers: list[_Answer], labels: list[Any]
) -> None:
    recorded = _send_feedback(service, model, answers, labels)
    console.print(f"feedback: {recorded:,} true labels sent back, by prediction id")


def _replay_pinned(
    service: _Service, model: str, rows: list[dict[str, Any]], version: int, labels: list[Any]
) -> float:
    """The earlier champion on the same rows, through its pinned route (logged as `pinned`,
    and never labelled: it is a comparison, not traffic to learn from)."""
    from sklearn.metrics import roc_auc_score

    scores = []
    with service.client() as client:
        for start in range(0, len(rows), FEEDBACK_CHUNK):
            path = f"/v1/models/{model}/versions/{version}/predict"
            response = client.post(path, json={"rows": rows[start : start + FEEDBACK_CHUNK]})
            if response.status_code != 200:
                raise ModelcycleError(f"pinned v{version}: HTTP {response.status_code}")
            scores += [p["probabilities"]["1"] for p in response.json()["predictions"]]
    return float(roc_auc_score(labels, scores))


def _print_log_quality(model: str, root: str, since: Any, role: str) -> None:
    """Realised quality per year and answering version, from the log alone: the logged outputs
    joined by id to the labels that came back."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    from modelcycle.serving import read_feedback, read_predictions

    with warnings.catch_warnings():  # pandas on parts where an input was never sent
        warnings.simplefilter("ignore", FutureWarning)
        predictions = read_predictions(root, model, since=since)
        labels = read_feedback(root, model)[["id", "label"]]
    predictions = predictions[predictions["role"] == role]
    joined = predictions.merge(labels, on="id")
    score = "output.probabilities.1"
    for (year, version), rows in joined.groupby(["input.year", "version"]):
        truth = rows["label"].astype(int)
        console.print(
            f"log, {int(year)} answered by v{version}: {len(rows):,} labelled of "
            f"{int((predictions['input.year'] == year).sum()):,}; realised ROC AUC "
            f"{roc_auc_score(truth, rows[score]):.4f}, accuracy "
            f"{accuracy_score(truth, rows['output.label'].astype(int)):.4f}",
            highlight=False,
        )


def _print_log_lineage(model: str, version: int) -> None:
    """What the registry's version records of the log it learned from."""
    from modelcycle.artifacts import ArtifactStore
    from modelcycle.settings import get_settings

    record = open_registry().get_version(model, version)
    store = ArtifactStore(get_settings().artifact_store)
    manifest = store.read_manifest(model, record.run_id, record.manifest_sha256)
    log = manifest.get("metadata", manifest).get("prediction_log")
    if log is None:
        return
    console.print(
        f"v{version} learned from {log['labelled_rows']:,} labelled rows of the prediction log "
        f"({len(log['parts'])} Parquet parts, each with its SHA-256 in the manifest; all "
        f"parts: {log['parts_sha256'][:16]}…)",
        highlight=False,
    )
