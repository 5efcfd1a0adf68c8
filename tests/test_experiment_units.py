"""The experiment's decision from log frames, and the service's routing helpers, without a
service: what promotes, what stops, what waits; canary shares; deprecation headers."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelcycle.config import Experiment as ExperimentConfig
from modelcycle.config import Guardrails, TaskType
from modelcycle.registry import (
    Deprecation,
    Experiment,
    ExperimentMode,
    ExperimentStatus,
)
from modelcycle.serving import (
    SHADOW_SUFFIX,
    RequestRefused,
    analyse,
    canary_bucket,
    deprecation_headers,
    routing_key,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def _experiment(mode: ExperimentMode, looks: int = 0) -> Experiment:
    return Experiment(
        id=7,
        model_name="m",
        challenger=2,
        champion=1,
        mode=mode,
        share=0.0 if mode is ExperimentMode.SHADOW else 0.5,
        status=ExperimentStatus.RUNNING,
        looks=looks,
        started_at=START,
        started_by="t",
        ended_at=None,
        last_evidence={},
    )


def _rows(
    role: str, version: int, labels: list[Any], latency: float, ids: list[str], flags=None
) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame(
        {
            "id": ids,
            "time": [(START + timedelta(seconds=i + 1)).isoformat() for i in range(n)],
            "model": "m",
            "version": version,
            "request_id": ids,
            "role": role,
            "latency_ms": latency,
            "flags": flags if flags is not None else [[] for _ in range(n)],
            "output.label": labels,
        }
    )


def _shadow_world(
    n: int, champion_acc: float, shadow_acc: float, seed: int, shadow_latency: float = 5.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n requests answered by the champion and scored by the shadow, all with feedback."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    right_a = rng.random(n) < champion_acc
    right_b = rng.random(n) < shadow_acc
    guess_a = np.where(right_a, truth, 1 - truth).tolist()
    guess_b = np.where(right_b, truth, 1 - truth).tolist()
    ids = [f"r{i}" for i in range(n)]
    predictions = pd.concat(
        [
            _rows("champion", 1, guess_a, 5.0, ids),
            _rows("shadow", 2, guess_b, shadow_latency, [i + SHADOW_SUFFIX for i in ids]),
        ],
        ignore_index=True,
    )
    feedback = pd.DataFrame({"id": ids, "label": truth.tolist()})
    return predictions, feedback


def test_a_better_shadow_is_promoted_with_a_paired_interval_above_zero() -> None:
    predictions, feedback = _shadow_world(3000, 0.70, 0.80, seed=1)
    look = analyse(
        _experiment(ExperimentMode.SHADOW),
        ExperimentConfig(),
        TaskType.binary_classification,
        predictions,
        feedback,
    )
    assert look.outcome == "promote"
    assert look.bound.paired and look.bound.low > 0
    assert look.rows["champion_with_feedback"] == look.rows["challenger_with_feedback"] == 3000
    assert 0.75 < look.bound.challenger_mean < 0.85
    evidence = look.evidence()
    assert evidence["look"] == 1 and evidence["interval"][0] > 0


def test_a_worse_shadow_is_stopped_and_equal_ones_continue_until_max_looks() -> None:
    config = ExperimentConfig()
    task = TaskType.binary_classification
    worse = analyse(
        _experiment(ExperimentMode.SHADOW), config, task, *_shadow_world(3000, 0.8, 0.7, 2)
    )
    assert worse.outcome == "stop" and "champion is better" in worse.reason
    same = _shadow_world(400, 0.8, 0.8, 3)
    assert analyse(_experiment(ExperimentMode.SHADOW), config, task, *same).outcome == "continue"
    last = analyse(_experiment(ExperimentMode.SHADOW, looks=59), config, task, *same)
    assert last.outcome == "stop" and "max_looks" in last.reason


def test_a_slow_challenger_breaches_the_latency_guardrail_whatever_its_accuracy() -> None:
    predictions, feedback = _shadow_world(3000, 0.70, 0.80, seed=4, shadow_latency=50.0)
    look = analyse(
        _experiment(ExperimentMode.SHADOW),
        ExperimentConfig(),
        TaskType.binary_classification,
        predictions,
        feedback,
    )
    assert look.outcome == "stop"
    latency = next(g for g in look.guardrails if g.name == "latency_p99_ratio")
    assert latency.breached and latency.value == pytest.approx(10.0)


def test_failed_canary_answers_count_as_errors() -> None:
    n = 400
    ids = [f"c{i}" for i in range(n)]
    failed = [["error"] if i % 10 == 0 else [] for i in range(n)]
    predictions = pd.concat(
        [
            _rows("champion", 1, [1] * n, 5.0, [f"a{i}" for i in range(n)]),
            _rows("canary", 2, [1] * n, 5.0, ids, flags=failed),
        ],
        ignore_index=True,
    )
    look = analyse(
        _experiment(ExperimentMode.CANARY),
        ExperimentConfig(),
        TaskType.binary_classification,
        predictions,
        pd.DataFrame({"id": [], "label": []}),
    )
    errors = next(g for g in look.guardrails if g.name == "error_rate")
    assert errors.value == pytest.approx(0.1) and errors.breached
    assert look.outcome == "stop" and "error_rate" in look.reason


def test_guardrails_wait_for_enough_rows_and_a_shifted_prediction_stops() -> None:
    config = ExperimentConfig(guardrails=Guardrails(min_rows=100))
    task = TaskType.binary_classification
    few = _shadow_world(50, 0.8, 0.8, 5)
    assert all(
        g.value is None
        for g in analyse(_experiment(ExperimentMode.SHADOW), config, task, *few).guardrails
    )
    n = 300
    ids = [f"r{i}" for i in range(n)]
    shifted = pd.concat(
        [
            _rows("champion", 1, [0] * n, 5.0, ids),
            _rows("shadow", 2, [1] * n, 5.0, [i + SHADOW_SUFFIX for i in ids]),
        ],
        ignore_index=True,
    )
    look = analyse(
        _experiment(ExperimentMode.SHADOW),
        config,
        task,
        shifted,
        pd.DataFrame({"id": [], "label": []}),
    )
    shift = next(g for g in look.guardrails if g.name == "prediction_shift")
    assert shift.value == pytest.approx(1.0) and look.outcome == "stop"


def test_rows_before_the_experiment_started_are_not_counted() -> None:
    predictions, feedback = _shadow_world(300, 0.8, 0.8, 6)
    early = predictions.assign(time=(START - timedelta(days=1)).isoformat())
    look = analyse(
        _experiment(ExperimentMode.SHADOW),
        ExperimentConfig(),
        TaskType.binary_classification,
        pd.concat([early.assign(id=early["id"] + "x"), predictions]),
        feedback,
    )
    assert look.rows["champion"] == 300


def test_an_empty_log_continues_and_says_what_it_waits_for() -> None:
    for mode in ExperimentMode:
        look = analyse(
            _experiment(mode),
            ExperimentConfig(),
            TaskType.binary_classification,
            pd.DataFrame(),
            pd.DataFrame(),
        )
        assert look.outcome == "continue" and "waiting for enough rows" in look.reason
        assert look.evidence()["interval"] == [None, None]


def test_canary_buckets_are_uniform_stable_and_keyed_by_entity() -> None:
    buckets = np.array([canary_bucket(3, f"request=r{i}") for i in range(20000)])
    assert abs((buckets < 0.1).mean() - 0.1) < 0.01
    assert canary_bucket(3, "customer=42") == canary_bucket(3, "customer=42")
    assert routing_key({"rows": [{"customer": 42}]}, "customer", "r1") == "customer=42"
    assert routing_key({"columns": {"customer": ["a", "b"]}}, "customer", "r1") == "customer=a"
    assert routing_key({"rows": [{"age": 3}]}, "customer", "r1") == "request=r1"
    assert routing_key({"rows": [{"customer": 42}]}, None, "r1") == "request=r1"


def test_a_full_shadow_queue_skips_requests_instead_of_holding_them() -> None:
    from types import SimpleNamespace

    from modelcycle.serving import ShadowScorer, create_metrics

    service = SimpleNamespace(metrics=create_metrics())
    scorer = ShadowScorer(service, max_rows=5)
    model = SimpleNamespace(name="m")
    for _ in range(3):
        scorer.offer(model, {"rows": [{}, {}]}, ["a", "b"], "r", "t")  # two rows each
    assert scorer.dropped == 1  # 2 + 2 queued, the third would make 6 > 5


def test_deprecation_headers_follow_the_rfcs_and_sunset_means_410() -> None:
    announced = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    sunset = datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC)
    notice = Deprecation("m", 1, sunset, 2, announced, "ann", "old")
    headers = deprecation_headers(notice, now=announced + timedelta(days=1))
    assert headers["deprecation"] == f"@{int(announced.timestamp())}"  # RFC 9745 sf-date
    assert headers["sunset"] == "Tue, 30 Jun 2026 23:59:59 GMT"  # RFC 8594 HTTP-date
    assert email.utils.parsedate_to_datetime(headers["sunset"]) == sunset
    assert headers["link"] == '</v1/models/m/versions/2/predict>; rel="successor-version"'
    with pytest.raises(RequestRefused) as gone:
        deprecation_headers(notice, now=sunset)
    assert gone.value.status == 410 and "version 2" in gone.value.message
    assert deprecation_headers(None) == {}
