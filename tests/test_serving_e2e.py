"""The prediction service as a client sees it: a real `modelcycle serve` process (two uvicorn
workers, free loopback port) driven over HTTP, with the real prediction log and registry.

One service is shared by the module; tests that move the registry (promotion, rollback,
retirement, a tampered file, an unreachable database, a killed worker) run after the ones
that only read, in file order. Every answered prediction is remembered and checked against
the log at the end: each one there exactly once, with the version that answered.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import small_config_dict, write_config
from serving_support import ServiceProcess, Trained, start_service, train_and_register

from modelcycle.errors import IntegrityError
from modelcycle.registry import Registry
from modelcycle.serving import ID_PATTERN, compact, read_feedback, read_predictions

MODEL = "gss-income"
TAMPER = "gss-tamper"
MAX_ROWS = 50
MAX_BODY = 64 * 1024
POLL_SECONDS = 0.5


class World:
    """The service, the versions behind it, and every answer it acknowledged."""

    def __init__(self, home: Path, service: ServiceProcess, versions: dict[str, Trained]):
        self.home = home
        self.service = service
        self.versions = versions
        self.registry_url = f"sqlite:///{home / 'registry.db'}"
        self.answered: dict[str, tuple[str, int]] = {}  # id -> (model, version)
        self.lock = threading.Lock()

    def remember(self, body: dict[str, Any]) -> None:
        with self.lock:
            for row in body["predictions"]:
                self.answered[row["id"]] = (body["model"], body["version"])

    def logged(self, model: str = MODEL) -> pd.DataFrame:
        return read_predictions(str(self.service.log_root), model)

    def registry(self) -> Registry:
        return Registry(self.registry_url)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.service.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and line.split(" ")[0] != name:
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, small_parquet: Path) -> Iterator[World]:
    home = tmp_path_factory.mktemp("serve-home")
    registry_url = f"sqlite:///{home / 'registry.db'}"
    store = str(home / "artifacts")
    raw = small_config_dict(small_parquet)
    config = write_config(home, raw, "income.yaml")
    tamper = write_config(home, {**raw, "name": TAMPER}, "tamper.yaml")
    # Another version of the same model that predicts other classes (gender, not income):
    # feedback on its answers is checked against its classes, not the champion's.
    other = {**raw, "target": "gender", "sensitive_columns": []}
    other["columns"] = {k: v for k, v in raw["columns"].items() if k != "high_income"}
    other["model"] = {k: v for k, v in raw["model"].items() if k != "balance"}
    other["evaluation"] = {**raw["evaluation"], "slices": ["educcat"], "positive_class": "Male"}
    other_classes = write_config(home, other, "other-classes.yaml")
    versions = {
        "v1": train_and_register(config, registry_url, store, max_iter=20, promote=True),
        "v2": train_and_register(config, registry_url, store, max_iter=40, promote=False),
        "v3": train_and_register(config, registry_url, store, max_iter=60, promote=False),
        "v4": train_and_register(other_classes, registry_url, store, max_iter=20, promote=False),
        "t1": train_and_register(tamper, registry_url, store, max_iter=20, promote=True),
        "t2": train_and_register(tamper, registry_url, store, max_iter=30, promote=False),
    }
    token = secrets.token_urlsafe(16)
    service = start_service(
        home,
        token,
        {
            "MODELCYCLE_SERVE_POLL_SECONDS": str(POLL_SECONDS),
            "MODELCYCLE_SERVE_MAX_ROWS_PER_REQUEST": str(MAX_ROWS),
            "MODELCYCLE_SERVE_MAX_BODY_BYTES": str(MAX_BODY),
            # Segments sealed and compacted every second or two: every test below runs with
            # compaction moving the log under it (checked at the end of the file).
            "MODELCYCLE_SERVE_LOG_SEGMENT_SECONDS": "1.5",
            "MODELCYCLE_SERVE_COMPACT_SECONDS": "1",
        },
        ["--workers", "2"],
    )
    try:
        service.wait_ready()
        _wait(lambda: _served_versions(service) == {MODEL: 1, TAMPER: 1}, "both models served")
        yield World(home, service, versions)
    finally:
        service.stop()


def _wait(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _served_versions(service: ServiceProcess) -> dict[str, int | None]:
    try:
        return httpx.get(f"{service.url}/readyz", timeout=5).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


def _rows(trained: Trained, n: int, start: int = 0) -> list[dict[str, Any]]:
    """Holdout rows as a client would send them: JSON values, missing as null."""
    frame = trained.holdout[trained.config.features.all].iloc[start : start + n]
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def _frame(trained: Trained, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows typed as training typed its data: numbers float64, categories text, NaN missing."""
    columns = {}
    for name in trained.config.features.numeric:
        columns[name] = pd.Series([r[name] for r in rows], dtype="float64")
    for name in trained.config.features.categorical:
        columns[name] = pd.Series([r[name] for r in rows], dtype=object).fillna(np.nan)
    return pd.DataFrame(columns)


def _expected(trained: Trained, rows: list[dict[str, Any]]) -> np.ndarray:
    """The pipeline's own probabilities for the rows."""
    return trained.pipeline.predict_proba(_frame(trained, rows))


def _proba(body: dict[str, Any]) -> np.ndarray:
    return np.array(
        [[p["probabilities"]["0"], p["probabilities"]["1"]] for p in body["predictions"]]
    )


def _predict(world: World, payload: Any, **kwargs: Any) -> httpx.Response:
    with world.service.client() as client:
        response = client.post(f"/v1/models/{MODEL}/predict", json=payload, **kwargs)
    if response.status_code == 200:
        world.remember(response.json())
    return response


# -- answers --------------------------------------------------------------------------------


def test_predictions_equal_the_pipeline_alone_and_in_mixed_batches(world: World) -> None:
    v1 = world.versions["v1"]
    rows = _rows(v1, 12)
    rows[1]["prestg10"] = None
    rows[2]["occrecode"] = None
    rows[3] = dict.fromkeys(rows[3])  # every feature missing
    rows[4]["wrkstat"] = None
    expected = _expected(v1, rows)
    together = _predict(world, {"rows": rows})
    assert together.status_code == 200, together.text
    body = together.json()
    assert (body["model"], body["version"]) == (MODEL, 1)
    np.testing.assert_allclose(_proba(body), expected, rtol=0, atol=1e-12)
    labels = [p["label"] for p in body["predictions"]]
    assert labels == v1.pipeline.predict(_frame(v1, rows)).tolist()
    for index in (1, 3, 0):  # alone: a missing numeric, every feature missing, a complete row
        alone = _predict(world, {"rows": [rows[index]]})
        assert alone.status_code == 200
        np.testing.assert_allclose(_proba(alone.json())[0], expected[index], rtol=0, atol=1e-12)
    # Missing values in a categorical column with and without present batch-mates.
    only_missing = _predict(world, {"rows": [rows[2], rows[4]]})
    np.testing.assert_allclose(_proba(only_missing.json()), expected[[2, 4]], rtol=0, atol=1e-12)
    # Concurrent requests, batched together by the service, answer the same.
    results: dict[int, np.ndarray] = {}

    def one(i: int) -> None:
        response = _predict(world, {"rows": [rows[i]]})
        results[i] = _proba(response.json())[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(
        np.array([results[i] for i in range(len(rows))]), expected, atol=1e-12
    )
    ids = [p["id"] for p in body["predictions"]]
    assert all(ID_PATTERN.match(i) for i in ids) and ids == sorted(ids)
    assert "missing:prestg10" in body["predictions"][1]["flags"]


def test_column_form_answers_like_the_row_form(world: World) -> None:
    v1 = world.versions["v1"]
    rows = _rows(v1, 5, start=20)
    rows[0]["age"] = 200  # out of the config's range: predicted and flagged
    rows[1]["occrecode"] = "Astronaut"  # a category the encoder never saw
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    response = _predict(world, {"columns": columns})
    assert response.status_code == 200, response.text
    body = response.json()
    np.testing.assert_allclose(_proba(body), _expected(v1, rows), rtol=0, atol=1e-12)
    assert "out_of_range:age" in body["predictions"][0]["flags"]
    assert "unseen_category:occrecode" in body["predictions"][1]["flags"]


def test_model_facts_name_version_lineage_and_input_schema(world: World) -> None:
    with world.service.client() as client:
        facts = client.get(f"/v1/models/{MODEL}").json()
        openapi = client.get("/openapi.json")
    assert facts["version"] == 1 and facts["classes"] == [0, 1]
    assert facts["lineage"]["model_sha256"] == world.registry().get_version(MODEL, 1).model_sha256
    schema = facts["input_schema"]
    assert schema["required"] == world.versions["v1"].config.features.all
    assert schema["additionalProperties"] is False
    assert "respondent_id" not in schema["properties"]
    assert facts["fast_path"] == {"on": True, "reason": "ok"}
    assert world.metric("modelcycle_serve_fast_path", model=MODEL, version="1") == 1
    assert openapi.status_code == 200
    assert "/v1/models/{name}/versions/{version}/predict" in openapi.json()["paths"]


# -- bad input: one test each -----------------------------------------------------------------


def _refused(world: World, response: httpx.Response, status: int, *named: str) -> dict[str, Any]:
    """The status, a message naming what is wrong, nothing logged, the service still up."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for text in named:
        assert text in error["message"], error["message"]
    assert "Traceback" not in response.text and str(world.home) not in response.text
    assert httpx.get(f"{world.service.url}/healthz", timeout=5).status_code == 200
    return error


@pytest.fixture
def nothing_logged(world: World) -> Iterator[None]:
    before = len(world.logged())
    yield
    assert len(world.logged()) == before


def _send(world: World, content: bytes, token: str | None = "default") -> httpx.Response:
    with world.service.client(token) as client:
        return client.post(
            f"/v1/models/{MODEL}/predict",
            content=content,
            headers={"content-type": "application/json"},
        )


def test_malformed_json(world: World, nothing_logged: None) -> None:
    _refused(world, _send(world, b'{"rows": [{"age": 41,'), 400, "malformed JSON", "line 1")


def test_wrong_type(world: World, nothing_logged: None) -> None:
    rows = _rows(world.versions["v1"], 3)
    rows[2]["age"] = "forty"
    error = _refused(world, _predict(world, {"rows": rows}), 422, "row 2", "'age'", "number")
    assert error["problems"] == [
        {"row": 2, "field": "age", "message": "expected a number, got a string 'forty'"}
    ]


def test_unknown_field(world: World, nothing_logged: None) -> None:
    rows = _rows(world.versions["v1"], 2)
    rows[1]["salary"] = 1000
    _refused(world, _predict(world, {"rows": rows}), 422, "row 1", "'salary'", "unknown field")


def test_missing_required_field(world: World, nothing_logged: None) -> None:
    rows = _rows(world.versions["v1"], 2)
    del rows[0]["educcat"]
    _refused(world, _predict(world, {"rows": rows}), 422, "row 0", "'educcat'", "missing")


def test_empty_rows(world: World, nothing_logged: None) -> None:
    _refused(world, _predict(world, {"rows": []}), 422, "rows", "empty")


def test_rows_above_the_limit(world: World, nothing_logged: None) -> None:
    rows = _rows(world.versions["v1"], MAX_ROWS + 1)
    _refused(world, _predict(world, {"rows": rows}), 413, f"{MAX_ROWS + 1} rows", str(MAX_ROWS))


def test_body_above_the_limit(world: World, nothing_logged: None) -> None:
    padding = " " * (MAX_BODY + 10)
    body = ('{"rows": []' + padding + "}").encode()
    _refused(world, _send(world, body), 413, str(MAX_BODY))


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number(world: World, nothing_logged: None, token: str) -> None:
    row = _rows(world.versions["v1"], 1)[0]
    row["childs"] = float(token.lower().replace("infinity", "inf"))
    body = json.dumps({"rows": [row]})  # Python writes NaN, Infinity, -Infinity tokens
    assert token in body
    error = _refused(world, _send(world, body.encode()), 422, "row 0", "'childs'", token)
    assert error["problems"][0]["field"] == "childs"


def test_pii_column_refused(world: World, nothing_logged: None) -> None:
    rows = _rows(world.versions["v1"], 2)
    rows[0]["respondent_id"] = 1234
    _refused(world, _predict(world, {"rows": rows}), 422, "row 0", "'respondent_id'", "PII")


def test_unknown_model(world: World) -> None:
    with world.service.client() as client:
        response = client.post("/v1/models/no-such-model/predict", json={"rows": [{}]})
    _refused(world, response, 404, "'no-such-model'")


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_no_token_or_a_wrong_one(world: World, nothing_logged: None, token: str | None) -> None:
    rows = _rows(world.versions["v1"], 1)
    with world.service.client(token) as client:
        response = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows})
        facts = client.get(f"/v1/models/{MODEL}")
    _refused(world, response, 401, "bearer token")
    assert response.headers["www-authenticate"] == "Bearer"
    assert facts.status_code == 401


# -- feedback ---------------------------------------------------------------------------------


def test_feedback_recorded_once_and_refused_per_item(world: World) -> None:
    answered = _predict(world, {"rows": _rows(world.versions["v1"], 3, start=40)}).json()
    ids = [p["id"] for p in answered["predictions"]]
    unknown = "01a00000-0000-7000-8000-000000000000"
    with world.service.client() as client:
        url = f"/v1/models/{MODEL}/feedback"
        first = client.post(url, json=[{"id": ids[0], "label": 1}, {"id": ids[1], "label": "0"}])
        again = client.post(url, json=[{"id": ids[0], "label": 1}])
        changed = client.post(url, json=[{"id": ids[0], "label": 0}])
        not_ours = client.post(url, json=[{"id": unknown, "label": 1}])
        bad_label = client.post(url, json=[{"id": ids[2], "label": 7}])
        mixed = client.post(url, json=[{"id": ids[2], "label": 0}, {"id": unknown, "label": 0}])
    assert first.status_code == 200 and first.json()["recorded"] == 2, first.text
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    _refused(world, changed, 422, "item 0", "already recorded as 1")
    _refused(world, not_ours, 422, "item 0", unknown)
    _refused(world, bad_label, 422, "item 0", "'label'", "[0, 1]")
    assert mixed.status_code == 200
    assert [i["status"] for i in mixed.json()["items"]] == ["recorded", "refused"]
    feedback = read_feedback(str(world.service.log_root), MODEL)
    mine = feedback.loc[feedback["id"].isin(ids)].sort_values("id")
    assert dict(zip(mine["id"], mine["label"].astype(str), strict=True)) == {
        ids[0]: "1",
        ids[1]: "0",
        ids[2]: "0",
    }


def test_feedback_is_checked_against_the_classes_of_the_answering_version(world: World) -> None:
    pinned = world.versions["v4"]
    assert pinned.version == 4 and list(pinned.pipeline.classes_) == ["Female", "Male"]
    with world.service.client() as client:
        response = client.post(
            f"/v1/models/{MODEL}/versions/4/predict", json={"rows": _rows(pinned, 3)}
        )
        assert response.status_code == 200 and response.json()["version"] == 4, response.text
        world.remember(response.json())
        ids = [p["id"] for p in response.json()["predictions"]]
        champion = _predict(world, {"rows": _rows(world.versions["v1"], 1)}).json()
        url = f"/v1/models/{MODEL}/feedback"
        theirs = client.post(url, json=[{"id": ids[0], "label": "Female"}])
        wrong = client.post(url, json=[{"id": ids[1], "label": 1}])
        mixed = client.post(
            url,
            json=[
                {"id": ids[2], "label": "Male"},
                {"id": champion["predictions"][0]["id"], "label": "Male"},
            ],
        )
    assert theirs.status_code == 200 and theirs.json()["recorded"] == 1, theirs.text
    _refused(world, wrong, 422, "item 0", "['Female', 'Male']", "version 4")
    assert [i["status"] for i in mixed.json()["items"]] == ["recorded", "refused"]
    assert "[0, 1]" in mixed.json()["items"][1]["message"]
    feedback = read_feedback(str(world.service.log_root), MODEL)
    mine = feedback.loc[feedback["id"].isin(ids)]
    assert dict(zip(mine["id"], mine["label"], strict=True)) == {ids[0]: "Female", ids[2]: "Male"}


# -- the registry moves ---------------------------------------------------------------------


def test_retired_pinned_version_answers_410(world: World) -> None:
    rows = _rows(world.versions["v3"], 2)
    with world.service.client() as client:
        pinned = client.post(f"/v1/models/{MODEL}/versions/3/predict", json={"rows": rows})
        assert pinned.status_code == 200, pinned.text
        world.remember(pinned.json())
        assert (pinned.json()["version"], pinned.json()["role"]) == (3, "pinned")
        np.testing.assert_allclose(
            _proba(pinned.json()), _expected(world.versions["v3"], rows), atol=1e-12
        )
        world.registry().retire(MODEL, 3, actor="test", reason="serving test")
        time.sleep(POLL_SECONDS * 3)
        gone = [
            client.post(f"/v1/models/{MODEL}/versions/3/predict", json={"rows": rows})
            for _ in range(4)  # both workers
        ]
        missing = client.post(f"/v1/models/{MODEL}/versions/99/predict", json={"rows": rows})
    for response in gone:
        _refused(world, response, 410, "version 3", "retired")
    _refused(world, missing, 404, "version 99")


def test_promotion_and_rollback_under_load_fail_no_request(world: World) -> None:
    rows = _rows(world.versions["v1"], 2, start=60)
    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with world.service.client() as client:
            while not stop.is_set():
                try:
                    response = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(response.text)
                    continue
                world.remember(response.json())
                seen.append(response.json()["version"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        world.registry().promote(MODEL, 2, actor="test", reason="serving test")
        _wait(lambda: seen[-20:].count(2) == 20, "v2 answering everywhere")
        world.registry().rollback(MODEL, actor="test", reason="serving test")
        _wait(lambda: seen[-20:].count(1) == 20, "v1 answering again")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    switches = [b for a, b in itertools.pairwise(seen) if a != b]
    assert 2 in switches and 1 in switches


def test_metrics_count_what_was_sent(world: World) -> None:
    labels = {"model": MODEL, "version": "1"}
    rows_before = world.metric("modelcycle_serve_rows_total", **labels)
    requests_before = world.metric("modelcycle_serve_requests_total", route="predict", **labels)
    errors_before = world.metric("modelcycle_serve_errors_total", model=MODEL, kind="validation")
    for size in (1, 3, 7):
        assert _predict(world, {"rows": _rows(world.versions["v1"], size)}).status_code == 200
    bad = _rows(world.versions["v1"], 1)
    bad[0]["age"] = "old"
    assert _predict(world, {"rows": bad}).status_code == 422
    assert world.metric("modelcycle_serve_rows_total", **labels) - rows_before == 11
    after = world.metric("modelcycle_serve_requests_total", route="predict", **labels)
    assert after - requests_before == 3
    errors = world.metric("modelcycle_serve_errors_total", model=MODEL, kind="validation")
    assert errors - errors_before == 1
    assert world.metric("modelcycle_serve_model_loaded", model=MODEL, version="1") == 2
    assert world.metric("modelcycle_serve_request_seconds_count", **labels) >= 3


def _move_alias_by_hand(database: Path, model: str, version: int) -> None:
    import sqlite3

    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE aliases SET version = ? WHERE model_name = ? AND alias = 'champion'",
            (version, model),
        )


def test_tampered_champion_is_not_loaded(world: World) -> None:
    location = Path(world.versions["t2"].location)
    location.write_bytes(location.read_bytes() + b"tampered")
    failures_before = world.metric("modelcycle_serve_verification_failures_total", model=TAMPER)
    # The registry refuses to promote a changed file (issue 10); someone with the database
    # file moves the alias by hand, and serving must still refuse what it would load.
    with pytest.raises(IntegrityError, match="not the files that were registered"):
        world.registry().promote(TAMPER, 2, actor="test", reason="serving test")
    _move_alias_by_hand(world.home / "registry.db", TAMPER, 2)
    _wait(
        lambda: (
            world.metric("modelcycle_serve_verification_failures_total", model=TAMPER)
            >= failures_before + 2
        ),
        "both workers refusing the tampered file",
    )
    rows = _rows(world.versions["t1"], 2)
    with world.service.client() as client:
        for _ in range(4):
            response = client.post(f"/v1/models/{TAMPER}/predict", json={"rows": rows})
            assert response.status_code == 200 and response.json()["version"] == 1
            world.remember(response.json())
    assert _served_versions(world.service)[TAMPER] == 1
    assert world.metric("modelcycle_serve_model_loaded", model=TAMPER, version="2") == 0


def test_registry_unreachable_keeps_serving(world: World) -> None:
    database = world.home / "registry.db"
    kept = world.home / "registry.db.kept"
    os.replace(database, kept)
    database.write_bytes(b"this is not a database " * 100)
    try:
        _wait(
            lambda: world.metric("modelcycle_serve_model_staleness_seconds", model=MODEL) >= 1,
            "the staleness gauge to rise",
        )
        response = _predict(world, {"rows": _rows(world.versions["v1"], 2)})
        assert response.status_code == 200 and response.json()["version"] == 1
    finally:
        os.replace(kept, database)
    _wait(
        lambda: world.metric("modelcycle_serve_model_staleness_seconds", model=MODEL) == 0,
        "the staleness gauge to fall back",
    )


def test_killed_worker_loses_no_acknowledged_record(world: World) -> None:
    workers = world.service.worker_pids()
    assert len(workers) == 2, workers
    rows = _rows(world.versions["v1"], 1, start=80)
    after_kill: list[int] = []
    killed = threading.Event()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:  # a new connection each time, so the kernel spreads them over both workers
                with world.service.client(timeout=10) as client:
                    response = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows})
            except httpx.HTTPError:
                continue  # the killed worker's connections drop; they were never acknowledged
            if response.status_code == 200:
                world.remember(response.json())
                if killed.is_set():
                    after_kill.append(1)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        os.kill(workers[0], signal.SIGKILL)
        killed.set()
        _wait(lambda: len(after_kill) >= 10, "answers after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    logged = world.logged()
    acknowledged = {i for i, (m, _) in world.answered.items() if m == MODEL}
    missing = acknowledged - set(logged["id"])
    assert not missing, (
        f"{len(missing)} acknowledged ids not in the log, e.g. {sorted(missing)[:3]}"
    )


def test_every_answer_is_in_the_log_exactly_once(world: World) -> None:
    for model in (MODEL, TAMPER):
        logged = world.logged(model)
        answered = {i: v for i, (m, v) in world.answered.items() if m == model}
        mine = logged.loc[logged["id"].isin(answered)]
        assert len(mine) == len(answered) == mine["id"].nunique()
        assert dict(zip(mine["id"], mine["version"], strict=True)) == answered
    assert world.answered, "no answer was recorded by the tests above"


def test_compaction_under_the_service_lost_and_duplicated_nothing(world: World) -> None:
    """Last in the file: it stops the service. Compaction ran every second under every test
    above (kills and swaps included); afterwards the Parquet parts, read raw (no
    de-duplication), hold every acknowledged answer exactly once with its version."""
    root = world.service.log_root
    assert list((root / MODEL / "predictions").rglob("part-*.parquet")), "nothing compacted"
    assert world.metric("modelcycle_serve_log_compacted_total", model=MODEL) > 0
    world.service.stop()  # seals the open segments
    for model in (MODEL, TAMPER):
        report = compact(str(root), model)
        assert not report.refused and not report.still_open
        assert not list((root / model / "segments").glob("*.*")), "segments left behind"
        parts = sorted((root / model / "predictions").rglob("part-*.parquet"))
        table = pd.concat([pq.read_table(p, columns=["id", "version"]).to_pandas() for p in parts])
        assert table["id"].is_unique, "a record compacted twice"
        answered = {i: v for i, (m, v) in world.answered.items() if m == model}
        found = dict(zip(table["id"], table["version"], strict=True))
        assert {i: found.get(i) for i in answered} == answered
