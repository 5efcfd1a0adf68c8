"""Retention of the prediction log: only day partitions wholly past the retention period go,
the audit log names them before they go, and the setting refuses less than six months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelcycle.registry import Registration, Registry, VersionStatus
from modelcycle.serving import IdFactory, PredictionLog, compact, read_feedback, read_predictions

MODEL = "retained"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _registry(tmp_path: Path) -> Registry:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    registry.register_version(
        Registration(
            model_name=MODEL,
            owner="test",
            description="retention test",
            run_id="run-1",
            artifact_uri=str(tmp_path / "artifacts" / MODEL / "run-1"),
            model_file="model.skops",
            model_sha256="0" * 64,
            data_fingerprint="test",
            config_hash="test",
            code_version="test",
            package_versions={},
            parent_version=None,
            metrics={},
            gate={},
        ),
        status=VersionStatus.CANDIDATE,
        actor="test",
        reason="retention test",
    )
    return registry


def _log(root: Path, ages_in_days: list[float]) -> list[str]:
    """One prediction (and its feedback an hour later) per age, compacted to Parquet."""
    ids = IdFactory().new_ids(len(ages_in_days))
    predictions, feedback = [], []
    for identifier, age in zip(ids, ages_in_days, strict=True):
        at = NOW - timedelta(days=age)
        predictions.append(
            {
                "id": identifier,
                "time": at.isoformat(),
                "model": MODEL,
                "version": 1,
                "request_id": f"r-{age}",
                "role": "champion",
                "inputs": {"age": 40},
                "outputs": {"label": "1"},
                "latency_ms": 1.0,
                "flags": [],
            }
        )
        feedback.append(
            {
                "id": identifier,
                "label": 1,
                "time": (at + timedelta(hours=1)).isoformat(),
                "model": MODEL,
            }
        )
    with PredictionLog(str(root), "w1") as log:
        log.submit_predictions(predictions).result()
        log.submit_feedback(feedback).result()
    compact(str(root), MODEL)
    return ids


def test_retention_removes_only_days_wholly_past_the_period(tmp_path: Path) -> None:
    from modelcycle.records import apply_retention

    registry = _registry(tmp_path)
    root = tmp_path / "predictions"
    # 400 and 200 days old go; 183.4 days old is on the cutoff's own day (kept whole); the rest
    # are younger.
    ids = _log(root, [400, 200, 183.4, 100, 1])
    before = set(read_predictions(str(root), MODEL)["id"])
    assert before == set(ids)

    report = apply_retention(registry, str(root), MODEL, 183, actor="test", now=NOW)

    left = read_predictions(str(root), MODEL)
    assert set(left["id"]) == set(ids[2:])
    assert set(read_feedback(str(root), MODEL)["id"]) == set(ids[2:])
    assert report.rows == 4  # two predictions and their two feedback records
    assert len(report.removed) == 4 and all("date=" in p for p in report.removed)
    (entry,) = [e for e in registry.audit_log(MODEL) if e.action == "retention"]
    assert entry.details["rows"] == 4 and sorted(entry.details["partitions"]) == sorted(
        report.removed
    )
    assert registry.verify_audit(MODEL)[0].intact

    again = apply_retention(registry, str(root), MODEL, 183, actor="test", now=NOW)
    assert again.removed == [] and again.rows == 0
    assert len([e for e in registry.audit_log(MODEL) if e.action == "retention"]) == 1


def test_retention_setting_defaults_to_six_months_and_refuses_less(monkeypatch) -> None:
    from modelcycle.errors import ConfigError
    from modelcycle.settings import get_settings

    monkeypatch.delenv("MODELCYCLE_LOG_RETENTION_DAYS", raising=False)
    assert get_settings().log_retention_days == 183
    monkeypatch.setenv("MODELCYCLE_LOG_RETENTION_DAYS", "400")
    assert get_settings().log_retention_days == 400
    monkeypatch.setenv("MODELCYCLE_LOG_RETENTION_DAYS", "30")
    with pytest.raises(ConfigError, match="MODELCYCLE_LOG_RETENTION_DAYS='30'"):
        get_settings()
