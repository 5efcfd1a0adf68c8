"""The service's pure parts, without a process: ids, the request schema, tokens, settings."""

from __future__ import annotations

import math
import os
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import demo_config_dict

from modelcycle.config import parse_config
from modelcycle.errors import ConfigError, RegistryError
from modelcycle.serving import (
    ID_PATTERN,
    IdFactory,
    NonFinite,
    RequestRefused,
    ServeSettings,
    announce,
    build_schema,
    check_models,
    decode_json,
    ensure_token_file,
    id_millis,
    load_tokens,
    read_settings,
    token_matches,
)


@pytest.fixture
def schema():
    config = parse_config(demo_config_dict())
    return build_schema(config, pipeline=None, pii_policy="refuse")


def _row(**changes):
    row = {
        "age": 41,
        "prestg10": 47.0,
        "childs": 2,
        "occrecode": "Professional",
        "wrkstat": "Full-Time",
        "educcat": "Bachelor",
        "maritalcat": "Married",
    }
    row.update(changes)
    return row


# -- ids ------------------------------------------------------------------------------------


def test_ids_are_uuid7_time_ordered_and_unique_across_factories() -> None:
    before = time.time_ns() // 1_000_000
    factories = [IdFactory(), IdFactory()]
    minted: list[list[str]] = [[], []]

    def mint(i: int) -> None:
        for _ in range(50):
            minted[i] += factories[i].new_ids(100)

    threads = [threading.Thread(target=mint, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = time.time_ns() // 1_000_000
    for ids in minted:
        assert ids == sorted(ids)  # strictly increasing within a worker
        assert all(ID_PATTERN.match(i) for i in ids)
        assert {uuid.UUID(i).version for i in ids} == {7}
        assert before <= id_millis(ids[0]) and id_millis(ids[-1]) <= after + 1
    assert len(set(minted[0]) | set(minted[1])) == 10_000


# -- request schema -------------------------------------------------------------------------


def test_rows_are_normalised_and_flagged(schema) -> None:
    batch = schema.parse(
        {
            "rows": [
                _row(),
                _row(age=None, occrecode=None),
                _row(age=150, wrkstat="Astronaut", gender="Female"),
            ]
        },
        max_rows=10,
    )
    assert batch.size == 3
    assert math.isnan(batch.features["age"][1]) and batch.features["age"][0] == 41.0
    assert batch.flags[0] == []
    assert set(batch.flags[1]) == {"missing:age", "missing:occrecode"}
    assert set(batch.flags[2]) == {"out_of_range:age", "unseen_category:wrkstat"}
    assert batch.inputs(1)["age"] is None
    assert batch.inputs(2)["gender"] == "Female"  # context column, logged, not a feature
    frame = schema.frame([batch])
    assert str(frame["age"].dtype) == "float64" and frame["occrecode"].dtype == object


def test_every_bad_row_is_named(schema) -> None:
    rows = [_row(), _row(age="x"), _row(childs=True), _row(bogus=1)]
    del rows[0]["educcat"]
    with pytest.raises(RequestRefused) as caught:
        schema.parse({"rows": rows}, max_rows=10)
    refused = caught.value
    assert refused.status == 422
    assert [(p["row"], p["field"]) for p in refused.problems] == [
        (0, "educcat"),
        (1, "age"),
        (2, "childs"),
        (3, "bogus"),
    ]
    assert refused.message.startswith("4 row(s) refused: row 0 field 'educcat'")


def test_non_finite_and_pii_refused_or_dropped(schema) -> None:
    with pytest.raises(RequestRefused) as caught:
        schema.parse({"rows": [_row(prestg10=NonFinite("-inf"))]}, max_rows=10)
    assert "-Infinity is not a number" in caught.value.message
    with pytest.raises(RequestRefused) as caught:
        schema.parse({"rows": [_row(respondent_id=7)]}, max_rows=10)
    assert "'respondent_id'" in caught.value.message and "PII" in caught.value.message
    dropping = build_schema(parse_config(demo_config_dict()), None, "drop")
    batch = dropping.parse({"rows": [_row(respondent_id=7)]}, max_rows=10)
    assert batch.dropped_pii == ["respondent_id"] and "respondent_id" not in batch.inputs(0)
    assert batch.flags[0] == ["pii_dropped:respondent_id"]


def test_column_form_limits_and_shape(schema) -> None:
    columns = {k: [v, v] for k, v in _row().items()}
    assert schema.parse({"columns": columns}, max_rows=10).size == 2
    with pytest.raises(RequestRefused) as caught:
        schema.parse({"columns": {**columns, "age": [1]}}, max_rows=10)
    assert "same length" in caught.value.message
    with pytest.raises(RequestRefused) as caught:
        schema.parse({"columns": columns}, max_rows=1)
    assert caught.value.status == 413
    for payload in ({"rows": [], "columns": {}}, {"rows": {}}, [1], {"data": []}):
        with pytest.raises(RequestRefused) as caught:
            schema.parse(payload, max_rows=10)
        assert caught.value.status == 422


def test_json_schema_requires_features_and_forbids_others(schema) -> None:
    described = schema.json_schema()
    assert described["required"] == ["age", "prestg10", "childs", *described["required"][3:]]
    assert described["additionalProperties"] is False
    assert described["properties"]["age"]["type"] == ["number", "null"]
    assert "Bachelor" in described["properties"]["educcat"]["examples"]


def test_decode_json_keeps_non_finite_tokens_and_names_malformed_position() -> None:
    decoded = decode_json(b'{"a": NaN, "b": -Infinity}')
    assert isinstance(decoded["a"], NonFinite) and decoded["b"] == -math.inf
    with pytest.raises(RequestRefused) as caught:
        decode_json(b'{"a": [1,\n 2')
    assert caught.value.status == 400 and "line 2" in caught.value.message
    with pytest.raises(RequestRefused) as caught:
        decode_json(b"\xff\xfe")
    assert caught.value.status == 400


# -- tokens and settings --------------------------------------------------------------------


def test_token_file_created_private_and_compared(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path))
    monkeypatch.delenv("MODELCYCLE_SERVE_TOKENS", raising=False)
    settings = ServeSettings()
    path = ensure_token_file(settings)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token_file(settings) == path  # kept, not replaced
    (token,) = load_tokens(settings)
    assert token_matches(f"Bearer {token.decode()}", [token])
    for header in (None, "", f"Basic {token.decode()}", "Bearer wrong", "Bearer "):
        assert not token_matches(header, [token])
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        ensure_token_file(settings)


def test_settings_round_trip_through_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MODELCYCLE_SERVE_TOKENS", "a, b")
    monkeypatch.setenv("MODELCYCLE_SERVE_MODELS", "one,two")
    settings = read_settings(port=9001, workers=3, host=None)
    assert settings.models == ["one", "two"] and settings.port == 9001
    assert settings.host == "127.0.0.1"
    assert load_tokens(settings) == [b"a", b"b"]
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    assert ServeSettings() == settings


def test_start_says_where_the_token_is_never_the_token(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path))
    monkeypatch.delenv("MODELCYCLE_SERVE_TOKENS", raising=False)
    settings = ServeSettings()
    path = ensure_token_file(settings)
    announce(settings, path)
    said = capsys.readouterr().err
    assert str(path) in said and path.read_text().strip() not in said
    announce(ServeSettings(insecure_no_auth=True, host="0.0.0.0"), None)
    said = capsys.readouterr().err
    assert "WARNING: --insecure-no-auth" in said and "not only loopback" in said


def test_a_model_named_at_start_must_exist(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path))
    with pytest.raises(RegistryError, match="no model named 'typo'"):
        check_models(ServeSettings(models=["typo"]))
    check_models(ServeSettings())  # none named: every model with a champion, checked later
