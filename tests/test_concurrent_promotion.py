"""Issue 10, classes 3 and 8: runs that finish together cannot promote past the gate, and each
command and governance artifact reports the audit entry its own transaction wrote.
"""

from __future__ import annotations

import multiprocessing
import random
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import registry_runs
import yaml
from conftest import REPO

from modelcycle.registry import SKIPPED_PROMOTION, Registration, Registry, VersionStatus

registry_url = registry_runs.registry_url  # the fixture: SQLite, and PostgreSQL when set
PROCESSES, RUNS_PER_PROCESS = 8, 4


def _registration(model: str, store: Path, run_id: str, metrics: dict, gate: dict) -> Registration:
    written = registry_runs.write_run(store, model, run_id)
    return Registration(
        model_name=model,
        owner="risk-team",
        description="race",
        run_id=run_id,
        **written.fields(),
        data_fingerprint="data-fp",
        code_version="abc123",
        package_versions={},
        parent_version=gate["judged_against"],
        metrics=metrics,
        gate=gate,
    )


def _training_runs(url: str, store: Path, barrier: Any, worker: int) -> None:
    """Four training runs in a row, each as the flow does it: read the champion, judge the
    candidate against it (non-inferiority on its metric), register, promote by compare and
    swap against the champion judged."""
    registry = Registry(url)
    rng = random.Random(worker)
    barrier.wait()
    for run in range(RUNS_PER_PROCESS):
        champion = registry.champion("race")
        judged = champion.version if champion else None
        score = rng.uniform(0.6, 0.9)
        passed = champion is None or score >= champion.metrics["roc_auc"]
        registration = _registration(
            "race",
            store,
            f"w{worker}-r{run}",
            {"roc_auc": score},
            {"passed": passed, "judged_against": judged},
        )
        status = VersionStatus.CANDIDATE if passed else VersionStatus.REJECTED
        version = registry.register_version(registration, status=status, actor="t", reason="r")
        if passed:
            registry.promote_judged(
                "race", version.version, judged_against=judged, actor="t", reason="gate"
            )
    registry.close()


def test_eight_processes_of_four_runs_never_promote_past_the_gate(
    registry_url: str, tmp_path: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    store = tmp_path / "artifacts"
    procs = [
        ctx.Process(target=_training_runs, args=(registry_url, store, barrier, i))
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    registry = Registry(registry_url)
    versions = {v.version: v for v in registry.list_versions("race")}
    log = registry.audit_log("race")
    assert len(versions) == PROCESSES * RUNS_PER_PROCESS
    promotions = [e for e in log if e.action == "promote"]
    for entry in promotions:
        promoted = versions[entry.version]
        # The champion it replaced is exactly the one its gate judged it against ...
        assert entry.details["previous"] == promoted.gate["judged_against"], entry
        # ... so no promotion ever replaced a better champion.
        if entry.details["previous"] is not None:
            replaced = versions[entry.details["previous"]]
            assert promoted.metrics["roc_auc"] >= replaced.metrics["roc_auc"]
    skipped = [e for e in log if e.action == SKIPPED_PROMOTION]
    for entry in skipped:
        assert entry.details["judged_against"] != entry.details["champion"]
        assert versions[entry.version].status is VersionStatus.CANDIDATE
    passed = [v for v in versions.values() if v.gate["passed"]]
    assert len(promotions) + len(skipped) == len(passed)
    assert registry.champion("race").version == promotions[-1].version
    assert all(r.intact for r in registry.verify_audit("race"))
    registry.close()


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_whose_champion_changed_meanwhile_is_registered_not_promoted(
    small_config: Path, state, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run's promotion lands between this run's gate and its promotion."""
    from flows.training import training

    original = Registry.register_version

    def register_then_rival(self: Registry, registration: Registration, **kwargs: Any):
        version = original(self, registration, **kwargs)
        rival = _registration(
            registration.model_name,
            Path(state.artifact_store),
            "rival-run",
            {"roc_auc": 0.5},
            {"passed": True, "judged_against": None},
        )
        won = original(self, rival, status=VersionStatus.CANDIDATE, actor="rival", reason="r")
        self.promote(rival.model_name, won.version, actor="rival", reason="finished first")
        return version

    monkeypatch.setattr(Registry, "register_version", register_then_rival)
    outcome = training(config_path=str(small_config))

    registry = Registry(state.registry_url)
    model = outcome["model"]
    assert outcome["gate"] == "promote"  # it passed its gate, against no champion ...
    assert outcome["status"] == "candidate"  # ... but was not promoted over the rival
    rival = registry.champion(model)
    assert rival.run_id == "rival-run"
    entry = registry.audit_log(model)[-1]
    assert (entry.action, entry.version) == (SKIPPED_PROMOTION, outcome["version"])
    assert entry.details == {"judged_against": None, "champion": rival.version}
    assert "not promoted" in entry.reason


def test_training_deployments_run_one_at_a_time_and_queue_the_rest() -> None:
    project = yaml.safe_load((REPO / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in project["deployments"]}
    for name in ("training", "retraining"):
        limit = by_name[name]["concurrency_limit"]
        assert limit == {"limit": 1, "collision_strategy": "ENQUEUE"}, name
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    assert ConcurrencyLimitStrategy("ENQUEUE")  # a strategy this Prefect knows


CLI_RACERS = 50


@pytest.mark.slow
def test_fifty_concurrent_cli_promotions_each_report_their_own_entry(live, monkeypatch) -> None:
    """Fifty `modelcycle models promote` processes started at once against the service's Prefect
    server (PostgreSQL in CI, as a team runs it; the test harness's SQLite server answered
    "database is locked" to a tenth of that): one champion, fifty chained entries, and every
    command and governance artifact names the entry its own transaction wrote."""
    import subprocess

    from live_prefect import BIN, client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from modelcycle.settings import get_settings

    monkeypatch.setenv("MODELCYCLE_HOME", str(live.state))
    settings = get_settings()
    model = f"race-{uuid.uuid4().hex[:8]}"  # the session server is shared: filter by our key
    registry = Registry(settings.registry_url)
    store = Path(settings.artifact_store)
    for i in range(CLI_RACERS):
        gate = {"passed": True, "judged_against": None}
        registration = _registration(model, store, f"run-{i}", {"roc_auc": 0.8}, gate)
        registry.register_version(
            registration, status=VersionStatus.CANDIDATE, actor="t", reason="r"
        )
    racers = {
        version: subprocess.Popen(
            [str(BIN / "modelcycle"), "models", "promote", model, str(version), "--reason", "race"],
            cwd=REPO,
            env=live.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for version in range(1, CLI_RACERS + 1)
    }
    outputs = {version: proc.communicate(timeout=600)[0] for version, proc in racers.items()}
    failed = {v: out for v, out in outputs.items() if racers[v].returncode != 0}
    assert not failed, failed

    promotions = {e.version: e for e in registry.audit_log(model) if e.action == "promote"}
    assert sorted(promotions) == list(range(1, CLI_RACERS + 1))
    for version, output in outputs.items():
        printed = re.search(r"v(\d+) became champion \(audit #(\d+)\)", output)
        assert printed, output
        assert (int(printed[1]), int(printed[2])) == (version, promotions[version].id)
    assert [r.intact for r in registry.verify_audit(model)] == [True]
    champion = registry.champion(model)
    assert champion.version == max(promotions.values(), key=lambda e: e.seq).version
    with client(live) as api:
        artifacts = api.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{model}-governance"]))
        )
    # Each flow run's artifact describes its own version's entry. Prefect's client sends a
    # request again after a read timeout, so one artifact may be stored twice under load: the
    # same run's same text, never another run's.
    by_run: dict[Any, set[str]] = {}
    for artifact in artifacts:
        by_run.setdefault(artifact.flow_run_id, set()).add(artifact.description)
    assert all(len(texts) == 1 for texts in by_run.values()), by_run
    described = sorted(texts.pop() for texts in by_run.values())
    expected = sorted(
        f"promote of {model} v{v}, audit entry #{promotions[v].id}"
        for v in range(1, CLI_RACERS + 1)
    )
    assert described == expected
