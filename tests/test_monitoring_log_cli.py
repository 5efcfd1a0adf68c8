"""`modelcycle monitor --log`: which window the flow is asked for, and options that do not go
together refused in one line before anything runs (the flow is replaced: only the command's
choice is tested here; the flow on the log is tested in test_monitoring_log_flow.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from typer.testing import CliRunner

from modelcycle.cli import app


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def run_monitoring(model: str, window: str | None, **kwargs: Any) -> dict[str, Any]:
        calls.append({"model": model, "window": window, **kwargs})
        return {
            "model": model,
            "version": 1,
            "status": "ok",
            "share_drifted": 0.0,
            "drifted_columns": [],
            "reasons": [],
            "production": {
                "labels": {
                    "labelled": 3,
                    "rows": 4,
                    "coverage": 0.75,
                    "delay_hours": {"p50": 26.0},
                },
                "service": {
                    "rows": [
                        {
                            "version": 1,
                            "rows": 4,
                            "requests": 2,
                            "latency_p50_ms": 5.0,
                            "latency_p99_ms": 9.5,
                            "error_rate": None,
                        }
                    ]
                },
                "backfilled": [],
                "plots": ["plots/latency.png"],
            },
        }

    monkeypatch.setattr("modelcycle.cli._monitor.run_monitoring", run_monitoring)
    return calls


def test_log_with_a_range_asks_the_flow_for_the_log_in_utc(state, asked) -> None:
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--log",
            "--model",
            "m",
            "--since",
            "2026-05-04",
            "--until",
            "2026-05-05T02:00:00+02:00",
        ],
    )
    assert result.exit_code == 0, result.output
    (call,) = asked
    assert call["source"] == "log" and call["window"] is None
    assert call["since"] == datetime(2026, 5, 4, tzinfo=UTC)
    assert call["until"] == datetime(2026, 5, 5, 2, tzinfo=timezone(timedelta(hours=2)))
    assert "labels: 3 of 4 rows (75%), label delay p50 26.0 h" in result.output
    assert "v1: 4 rows, 2 requests, p50 5.0 ms, p99 9.5 ms, error rate -" in result.output


def test_log_without_since_leaves_it_to_the_last_run(state, asked) -> None:
    result = CliRunner().invoke(app, ["monitor", "--log", "--model", "m"])
    assert result.exit_code == 0, result.output
    assert asked[0]["since"] is None and asked[0]["until"] is None


def test_a_file_window_is_not_sent_log_options(state, asked) -> None:
    result = CliRunner().invoke(app, ["monitor", "w.parquet", "--model", "m"])
    assert result.exit_code == 0, result.output
    assert "source" not in asked[0] and asked[0]["window"] == "w.parquet"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["w.parquet", "--log"], "give a WINDOW file or --log, not both"),
        ([], "WINDOW: name a CSV/Parquet file or glob, or give --log"),
        (
            ["w.parquet", "--since", "2026-01-01"],
            "--since/--until select a range of the prediction log",
        ),
        (["--log", "--start", "2001"], "with --log use --since/--until"),
        (["--log", "--since", "last tuesday"], "--since 'last tuesday': expected an ISO date"),
    ],
)
def test_options_that_do_not_go_together_are_refused_in_one_line(
    state, asked, args, message
) -> None:
    result = CliRunner().invoke(app, ["monitor", "--model", "m", *args])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert asked == []
