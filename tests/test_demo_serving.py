"""The demo's serving chapter, end to end: a real `modelcycle serve` process on a loopback port,
the 2008 respondents replayed over HTTP, their labels sent back, a rollback through the
governance flow while a client keeps asking, the challenger retired, the service stopped.

Two small fits registered the way the training flow records them (`serving_support`), the
second promoted over the first, give the state the chapter starts from: version 2 champion,
version 1 the champion it replaced.
Checked from the registry and the prediction log, not from the console, except the one line
that counts failed requests during the rollback (nothing else records a refused request).
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
from serving_support import free_port, train_and_register

from modelcycle.data import DEMO_FILE

MODEL = "gss-income"


def test_the_serving_chapter_replays_a_year_and_rolls_back_live(
    state, prefect_harness, small_config: Path, demo_parquet: Path, monkeypatch, capsys
) -> None:
    from modelcycle.cli import _demo
    from modelcycle.registry import Registry, VersionStatus
    from modelcycle.serving import read_feedback, read_predictions

    state.data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(demo_parquet, state.data_dir / DEMO_FILE)
    for max_iter in (20, 30):
        train_and_register(
            small_config, state.registry_url, state.artifact_store, max_iter, promote=True
        )
    port = free_port()
    monkeypatch.setattr(_demo, "_free_port", lambda: port)
    # The experiment chapter (two more survey years through shadow and canary) is not what
    # this test is about; its mechanisms are tested in tests/test_experiments_e2e.py.
    monkeypatch.setattr("modelcycle.cli._demo.experiment_chapter", lambda *args, **kwargs: None)

    _demo._serving_chapter(MODEL, str(small_config), challenger=2, promoted=True)

    registry = Registry(state.registry_url)
    assert registry.champion(MODEL).version == 1
    assert registry.get_version(MODEL, 2).status == VersionStatus.RETIRED
    actions = [(e.action, e.version, e.actor) for e in registry.audit_log(MODEL)][-2:]
    assert actions == [("rollback", 1, "demo"), ("retire", 2, "demo")]

    table = pd.read_parquet(demo_parquet)
    year = table.loc[table["year"] == _demo.DEMO_TRAFFIC_YEAR]
    log = read_predictions(str(state.home / "predictions"), MODEL)
    assert log["id"].is_unique
    answered_by_v2 = log.loc[log["version"] == 2]
    assert len(answered_by_v2) >= len(year)  # the replay, then the rollback's traffic
    assert set(log["version"]) == {1, 2}
    assert log.loc[log["version"] == 1, "time"].min() > answered_by_v2["time"].max()

    feedback = read_feedback(str(state.home / "predictions"), MODEL)
    assert len(feedback) == len(year)
    assert feedback["id"].isin(answered_by_v2["id"]).all()
    assert sorted(feedback["label"].astype(int)) == sorted(year["high_income"].astype(int))

    out = capsys.readouterr().out
    failed = re.search(r"requests while rolling back, (\d+) failed", out)
    assert failed is not None and failed.group(1) == "0", out
    with socket.socket() as sock, pytest.raises(OSError):  # the service is gone
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
