"""Monitoring on the prediction log, without Prefect: the log window (faults included), the
labels and their delays, service health, fairness in production and the window history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from log_traffic import feedback, record, spaced, write

from modelcycle import monitoring
from modelcycle.config import ServiceLimits, load_config
from modelcycle.errors import DataError
from modelcycle.logstore import list_segments

REPO = Path(__file__).resolve().parent.parent
MODEL = "gss-income"
CLASSES = np.array([0, 1])
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "configs" / "demo.yaml")


def _inputs(rng: np.random.Generator, gender: str | None = None) -> dict:
    row = {
        "age": int(rng.integers(18, 89)),
        "prestg10": float(rng.integers(10, 90)),
        "childs": int(rng.integers(0, 8)),
        "occrecode": str(rng.choice(["Professional", "Service", "Sales"])),
        "wrkstat": str(rng.choice(["Full-Time", "Part-Time"])),
        "educcat": str(rng.choice(["High School", "Bachelor"])),
        "maritalcat": str(rng.choice(["Married", "Never Married"])),
    }
    if gender is not None:
        row["gender"] = gender
    return row


def _traffic(n: int, start: datetime, version: int = 1, seed: int = 0, **kwargs) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for at in spaced(start, n):
        p = float(rng.uniform())
        out.append(record(MODEL, version, _inputs(rng, "Female"), int(p >= 0.5), p, at, **kwargs))
    return out


def test_a_log_window_holds_the_logged_inputs_outputs_and_joined_labels(tmp_path, config):
    rows = _traffic(50, T0)
    labelled = rows[:20]
    late = [
        feedback(MODEL, r["id"], 1 - r["outputs"]["label"], T0 + timedelta(hours=3))
        for r in labelled
    ]
    write(tmp_path, rows, late)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    table = window.window.table
    assert len(table) == 50
    assert table["age"].tolist() == [r["inputs"]["age"] for r in rows]
    assert table["gender"].eq("Female").all()  # a sensitive column logged as context
    # The labels that came back, by id; every one of them the opposite of the answer.
    joined = table[config.target]
    assert joined.notna().sum() == 20
    assert (joined[:20].astype(int) == 1 - window.outputs["prediction"][:20]).all()
    assert window.outputs["score"].tolist() == pytest.approx(
        [r["outputs"]["probabilities"]["1"] for r in rows]
    )
    delays = monitoring.label_delays(window.traffic)
    assert delays["labelled"] == 20 and delays["coverage"] == pytest.approx(0.4)
    assert delays["delay_hours"]["max"] == pytest.approx(3.0, abs=0.02)
    assert delays["delay_hours"]["p50"] == pytest.approx(3.0 - 10 / 3600, abs=0.01)


def test_the_range_keeps_since_and_excludes_until(tmp_path, config):
    rows = _traffic(10, T0)  # one second apart
    write(tmp_path, rows)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, T0 + timedelta(seconds=2), T0 + timedelta(seconds=5)
    )
    assert window.traffic["id"].tolist() == [r["id"] for r in rows[2:5]]


def test_shadow_rows_are_left_out_and_canary_rows_stay(tmp_path, config):
    answered = _traffic(6, T0)
    canary = _traffic(3, T0 + timedelta(seconds=10), version=2, seed=1)
    shadow = _traffic(6, T0, version=2, seed=2)
    for row in canary:
        row["role"] = "canary"
    for row, of in zip(shadow, answered, strict=True):
        row["role"], row["id"] = "shadow", f"{of['id']}.shadow"
    write(tmp_path, answered + canary + shadow)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    assert len(window.window.table) == 9
    assert sorted(window.traffic["id"]) == sorted(r["id"] for r in answered + canary)
    assert window.traffic["version"].value_counts().to_dict() == {1: 6, 2: 3}
    assert any("6 shadow row(s) left out" in f.message for f in window.findings)


def test_an_empty_log_window_fails_naming_the_log_and_the_range(tmp_path, config):
    write(tmp_path, _traffic(5, T0))
    later = T0 + timedelta(days=3)
    with pytest.raises(DataError, match=r"no predictions in this range") as caught:
        monitoring.read_log_window(
            str(tmp_path), MODEL, config, CLASSES, later, later + timedelta(days=1)
        )
    assert str(tmp_path) in str(caught.value) and later.isoformat() in str(caught.value)


def test_a_corrupted_segment_is_refused_by_name_and_the_others_are_read(tmp_path, config):
    write(tmp_path, _traffic(30, T0, seed=1), worker="good")
    write(tmp_path, _traffic(30, T0 + timedelta(minutes=5), seed=2), worker="bad")
    damaged = next(p for p in list_segments(tmp_path, MODEL) if p.name.startswith("bad-"))
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    assert len(window.window.table) == 30
    assert window.refused and damaged.name in window.refused[0]
    refused = [f for f in window.findings if f.severity == "warning" and damaged.name in f.message]
    assert refused, window.findings


def test_feedback_for_an_id_of_another_model_is_counted_and_ignored(tmp_path, config):
    rows = _traffic(10, T0)
    other = record("other-model", 1, {"x": 1}, 1, 0.9, T0)
    labels = [
        feedback(MODEL, rows[0]["id"], 1, T0 + timedelta(hours=1)),
        feedback(MODEL, other["id"], 1, T0 + timedelta(hours=1)),
    ]
    write(tmp_path, [*rows, other], labels)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    assert window.unmatched_feedback == 1
    assert window.window.table[config.target].notna().sum() == 1
    assert any("never answered" in f.message for f in window.findings)


def test_the_arrow_join_of_labels_answers_as_the_pandas_join(tmp_path, config):
    """Labels are joined on Arrow columns; the pandas join (kept for parts whose schemas do
    not combine) is the reference: shadow rows left out, the earliest answer of an id
    winning, another model's id counted."""
    from modelcycle.logstore import log_rows, read_log_table
    from modelcycle.monitoring import _traffic as traffic

    rows = _traffic(40, T0)
    shadow = _traffic(5, T0, version=2, seed=3)
    for row, of in zip(shadow, rows, strict=False):
        row["role"], row["id"] = "shadow", f"{of['id']}.shadow"
    other = record("other-model", 1, {"x": 1}, 1, 0.9, T0)
    labels = [
        feedback(MODEL, r["id"], i % 2, T0 + timedelta(hours=1)) for i, r in enumerate(rows[:15])
    ]
    labels.append(feedback(MODEL, rows[3]["id"], 0, T0 + timedelta(hours=2)))  # a later answer
    labels.append(feedback(MODEL, other["id"], 1, T0 + timedelta(hours=1)))
    write(tmp_path, [*rows, *shadow, other], labels)
    end = T0 + timedelta(days=1)
    read = read_log_table(str(tmp_path), MODEL, "predictions", None, end)
    logged, answered = traffic._answered_rows(log_rows(read))
    assert answered is not None and int((~answered).sum()) == 5
    answers = read_log_table(str(tmp_path), MODEL, "feedback")
    ids = read.table["id"].filter(answered)
    arrow = traffic._join_feedback_arrow(ids, answers.table, None, end, str(tmp_path), MODEL)
    pandas = traffic._join_feedback(logged, log_rows(answers), None, end, str(tmp_path), MODEL)
    assert arrow[0].tolist() == pandas[0].tolist()
    np.testing.assert_array_equal(arrow[1], pandas[1])
    assert arrow[2] == pandas[2] == 1
    by_id = dict(zip(logged["id"], arrow[0], strict=True))
    assert by_id[rows[3]["id"]] == 1  # the first answer (3 % 2), not the later 0
    assert sum(v is not None for v in arrow[0]) == 15


def test_service_flags_become_findings_counted_per_column(tmp_path, config):
    rows = _traffic(40, T0, flags=())
    for r in rows[:4]:
        r["flags"] = ["unseen_category:occrecode"]
    rows[5]["flags"] = ["out_of_range:age", "missing:prestg10"]
    write(tmp_path, rows)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    by_column = {(f.column, f.severity): f.message for f in window.findings}
    assert "on 4 of 40 rows" in by_column[("occrecode", "warning")]
    assert "on 1 of 40 rows" in by_column[("age", "warning")]
    assert ("prestg10", "info") in by_column  # missing values are reported, not warned about


def test_a_window_spanning_a_version_change_is_reported_per_version(tmp_path, config):
    first = _traffic(300, T0, version=1, seed=3, latency_ms=4.0)
    second = _traffic(250, T0 + timedelta(hours=1), version=2, seed=4, latency_ms=40.0)
    labels = [
        feedback(MODEL, r["id"], r["outputs"]["label"], T0 + timedelta(hours=2)) for r in first
    ]  # v1 always right
    write(tmp_path, [*first, *second], labels)
    window = monitoring.read_log_window(
        str(tmp_path),
        MODEL,
        config,
        CLASSES,
        None,
        T0 + timedelta(days=1),
        retired={2: "2026-03-03"},
    )
    config = config.model_copy(
        update={"monitoring": config.monitoring.model_copy(update={"min_rows": 100})}
    )
    summaries = monitoring.version_summaries(window, lambda outputs: None, config)
    assert [(s.version, s.rows, s.labelled) for s in summaries] == [(1, 300, 300), (2, 250, 0)]
    assert summaries[0].realised["accuracy"] == pytest.approx(1.0)
    assert summaries[1].realised is None
    assert (summaries[0].latency_p50_ms, summaries[1].latency_p50_ms) == (4.0, 40.0)
    assert any("v2, retired 2026-03-03" in f.message for f in window.findings)


def test_service_health_judges_latency_and_errors_per_version(tmp_path, config):
    slow = _traffic(200, T0, latency_ms=250.0)
    write(tmp_path, slow)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )

    def sample(model: str, route: str, status: str, version: str, value: float) -> str:
        labels = f'model="{model}",route="{route}",status="{status}",version="{version}"'
        return f"modelcycle_serve_requests_total{{{labels}}} {value}"

    text = "\n".join(
        [
            "# TYPE modelcycle_serve_requests_total counter",
            sample(MODEL, "predict", "200", "1", 190.0),
            sample(MODEL, "predict", "503", "1", 10.0),
            sample("other", "predict", "500", "1", 99.0),  # another model's errors
            sample(MODEL, "feedback", "500", "", 7.0),  # not a prediction
        ]
    )
    metrics = monitoring.ServiceMetrics("http://x/metrics", monitoring.parse_metrics(text, MODEL))
    limits = ServiceLimits(max_p99_ms=100, max_error_rate=0.01, min_requests=50)
    health = monitoring.service_health(window, limits, metrics)
    (row,) = health.rows
    assert (row.requests, row.rows) == (200, 200)
    assert row.rows_per_second == pytest.approx(200 / 199)
    assert row.error_rate == pytest.approx(10 / 200)
    assert len(health.breaches) == 2
    assert "p99 latency 250.0 ms" in health.breaches[0] and "error rate 5.00%" in health.breaches[1]
    relaxed = monitoring.service_health(window, ServiceLimits(max_p99_ms=300), metrics)
    assert relaxed.breaches == []
    few = monitoring.service_health(window, ServiceLimits(max_p99_ms=1, min_requests=1000), metrics)
    assert few.breaches == [] and "not judged" in few.notes[0]


def test_unreachable_service_metrics_are_a_note_and_the_log_figures_stay(tmp_path, config):
    write(tmp_path, _traffic(20, T0))
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = monitoring.read_service_metrics(f"http://127.0.0.1:{port}/metrics", MODEL, timeout=2)
    assert not metrics.reachable and "unreachable" in metrics.note
    health = monitoring.service_health(window, ServiceLimits(max_error_rate=0.01), metrics)
    assert health.rows[0].latency_p50_ms == 5.0 and health.rows[0].error_rate is None
    assert any("unreachable" in n for n in health.notes)


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), table I: 0/10 -> [0, 0.2775]; 1/10 -> [0.0179, 0.4042]; 81/263.
    assert monitoring.wilson_interval(0, 10, 0.95) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert monitoring.wilson_interval(1, 10, 0.95) == pytest.approx((0.0179, 0.4042), abs=1e-4)
    assert monitoring.wilson_interval(81, 263, 0.95) == pytest.approx((0.2553, 0.3662), abs=1e-4)


def _fair_traffic(tmp_path: Path, rate_f: float, rate_m: float, n_f: int, n_m: int, seed=0):
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for gender, rate, n in (("Female", rate_f, n_f), ("Male", rate_m, n_m)):
        for at in spaced(T0, n):
            chosen = bool(rng.uniform() < rate)
            r = record(MODEL, 1, _inputs(rng, gender), int(chosen), 0.9 if chosen else 0.1, at)
            rows.append(r)
            labels.append(feedback(MODEL, r["id"], 1, at + timedelta(hours=1)))  # all positive
    write(tmp_path, rows, labels)


def _with_fairness(config, **limits):
    gate = config.gate.model_copy(
        update={"fairness": config.gate.fairness.model_copy(update=limits)}
    )
    return config.model_copy(update={"gate": gate})


def test_fairness_in_production_flags_a_clear_gap_and_not_a_noisy_one(tmp_path, config):
    config = _with_fairness(config, max_selection_rate_gap=0.1, max_tpr_gap=0.1, min_group_rows=30)
    _fair_traffic(tmp_path / "clear", 0.2, 0.6, 600, 600)
    window = monitoring.read_log_window(
        str(tmp_path / "clear"), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    fairness = monitoring.production_fairness(window, config, 0.95)
    groups = {g.group: g for g in fairness.groups["gender"]}
    assert groups["Female"].selection_rate == pytest.approx(0.2, abs=0.05)
    assert groups["Male"].selection_rate == pytest.approx(0.6, abs=0.05)
    # Every label is positive, so the TPR is the selection rate here.
    assert groups["Female"].tpr == pytest.approx(groups["Female"].selection_rate)
    verdicts = {c.measure: c.verdict for c in fairness.checks}
    assert verdicts == {"selection_rate_gap": "breach", "tpr_gap": "breach"}

    _fair_traffic(tmp_path / "noisy", 0.45, 0.60, 40, 40, seed=5)
    window = monitoring.read_log_window(
        str(tmp_path / "noisy"), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    noisy = monitoring.production_fairness(window, config, 0.95)
    assert all(c.verdict in ("ok", "within_noise") for c in noisy.checks), noisy.checks


def test_groups_too_small_are_reported_not_judged(tmp_path, config):
    config = _with_fairness(config, max_selection_rate_gap=0.1, min_group_rows=30)
    _fair_traffic(tmp_path, 0.1, 0.9, 200, 10)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, config, CLASSES, None, T0 + timedelta(days=1)
    )
    fairness = monitoring.production_fairness(window, config, 0.95)
    assert fairness.checks == []
    assert {g.group: g.judged for g in fairness.groups["gender"]} == {"Female": True, "Male": False}
    assert any("Male (10)" in n and "not judged" in n for n in fairness.notes)
    assert any("fewer than two groups" in n for n in fairness.notes)


def test_the_history_keeps_windows_in_order_and_survives_a_rewrite(tmp_path):
    history = monitoring.WindowHistory(tmp_path / "windows.json")
    assert history.last_until() is None
    rec = monitoring.WindowRecord(
        run_id="r1",
        since=None,
        until=T0.isoformat(),
        monitored_version=1,
        status="ok",
        versions={"1": {"rows": 10, "labelled": 2}},
        recorded_at="a",
        updated_at="a",
    )
    history.record(rec, [])
    later = monitoring.WindowRecord(
        run_id="r2",
        since=T0.isoformat(),
        until=(T0 + timedelta(days=1)).isoformat(),
        monitored_version=1,
        status="ok",
        versions={"1": {"rows": 5, "labelled": 5}},
        recorded_at="b",
        updated_at="b",
    )
    history.record(later, [])
    assert history.last_until() == T0 + timedelta(days=1)
    assert [r.run_id for r in monitoring.due_for_backfill(history.load(), 14)] == ["r1"]
    (tmp_path / "windows.json").write_text("not json")
    with pytest.raises(DataError, match=r"windows\.json"):
        history.load()


def test_regression_says_nothing_is_estimated(tmp_path, config):
    regression = config.model_copy(update={"task": type(config.task)("regression")})
    rows = _traffic(10, T0)
    for r in rows:
        r["outputs"] = {"label": 1.5}
    write(tmp_path, rows)
    window = monitoring.read_log_window(
        str(tmp_path), MODEL, regression, None, None, T0 + timedelta(days=1)
    )
    report = monitoring.label_report(window, lambda outputs: None, regression)
    assert report["estimated_unlabelled"] is None
    assert "nothing is estimated" in report["estimate_note"]
    assert window.proba is None and window.outputs["prediction"].eq(1.5).all()


def _production(breaches: list[str], fairness_verdict: str | None) -> monitoring.ProductionReport:
    health = monitoring.ServiceHealth([], None, "", breaches, [])
    fairness = None
    if fairness_verdict is not None:
        check = monitoring.FairnessCheck("gender", "tpr_gap", 0.3, 0.2, fairness_verdict, "gap")
        fairness = monitoring.ProductionFairness(1, {}, [check], [])
    return monitoring.ProductionReport([], {}, health, fairness)


def test_service_and_fairness_breaches_open_their_own_incident_kinds_not_drift():
    ok = monitoring.Decision(monitoring.Status.ok, ["no feature, prediction or quality threshold"])
    judged = monitoring.judge_production(ok, _production(["slow"], "breach"))
    assert judged.status == monitoring.Status.warning  # not drift: no retraining event
    assert judged.incident_kinds == ["service", "fairness"]
    assert judged.reasons[:2] == ["slow", "gap"]
    drift = monitoring.Decision(monitoring.Status.drift, ["moved"], ["drift"], {"drift": "high"})
    both = monitoring.judge_production(drift, _production(["slow"], None))
    assert both.status == monitoring.Status.drift and both.incident_kinds == ["drift", "service"]
    quiet = monitoring.judge_production(ok, _production([], "within_noise"))
    assert quiet.status == monitoring.Status.ok and quiet.incident_kinds == []
    assert "gap" in quiet.reasons
