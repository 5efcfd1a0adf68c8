"""Erasure of one data subject: only a declared subject key, only that person's rows (in
Parquet parts and in segments not yet compacted, and their feedback), verified, and audited by
a keyed hash that never holds the value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import small_config_dict, write_config
from serving_support import train_and_register

from modelcycle.registry import Registry
from modelcycle.serving import IdFactory, PredictionLog, read_feedback, read_predictions
from modelcycle.utils import keyed_hash

MODEL = "gss-income"
KEY = b"k" * 32
PERSON = "R-1042"


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, small_parquet: Path) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("privacy")
    raw = small_config_dict(small_parquet)
    raw["subject_keys"] = ["subject_id"]
    config = write_config(home, raw)
    url = f"sqlite:///{home / 'registry.db'}"
    train_and_register(config, url, str(home / "artifacts"), max_iter=10, promote=True)
    return home, url


def _log(root: Path, people: list[str], pseudonymise: bool) -> dict[str, str]:
    """One prediction per entry (over three days, compacted except the last), feedback for
    each; returns id -> person."""
    ids = IdFactory().new_ids(len(people))
    now = datetime.now(UTC)
    records, feedback = [], []
    for i, (identifier, person) in enumerate(zip(ids, people, strict=True)):
        logged = keyed_hash(KEY, "subject_id", person) if pseudonymise else person
        at = now - timedelta(days=i % 3)
        records.append(
            {
                "id": identifier,
                "time": at.isoformat(),
                "model": MODEL,
                "version": 1,
                "request_id": f"r{i}",
                "role": "champion",
                "inputs": {"age": 30 + i, "subject_id": logged},
                "outputs": {"label": "1"},
                "latency_ms": 1.0,
                "flags": [],
            }
        )
        feedback.append({"id": identifier, "label": 1, "time": at.isoformat(), "model": MODEL})
    half = len(records) // 2
    with PredictionLog(str(root), "w1") as log:  # sealed on close: compacted by the erasure
        log.submit_predictions(records[:half]).result()
        log.submit_feedback(feedback[:half]).result()
    with PredictionLog(str(root), "w2") as log:
        log.submit_predictions(records[half:]).result()
        log.submit_feedback(feedback[half:]).result()
    return dict(zip(ids, people, strict=True))


@pytest.mark.parametrize("pseudonymise", [False, True], ids=["plain", "pseudonymised"])
def test_erasure_removes_that_person_and_nothing_else(
    registered: tuple[Path, str], tmp_path: Path, pseudonymise: bool
) -> None:
    from modelcycle.records import erase_subject

    _, url = registered
    root = tmp_path / "predictions"
    people = [PERSON, "R-7", PERSON, "R-8", "R-9", PERSON, "R-10", "R-1042x"]
    owners = _log(root, people, pseudonymise)
    registry = Registry(url)

    report = erase_subject(registry, str(root), MODEL, "subject_id", PERSON, KEY, actor="test")

    kept = {i for i, p in owners.items() if p != PERSON}
    assert set(read_predictions(str(root), MODEL)["id"]) == kept
    assert set(read_feedback(str(root), MODEL)["id"]) == kept
    assert report.predictions == 3 and report.feedback == 3 and report.complete
    (entry,) = [e for e in registry.audit_log(MODEL) if e.action == "erasure"][-1:]
    text = json.dumps(entry.to_dict(), default=str)
    assert PERSON not in text
    assert entry.details["subject"] == keyed_hash(KEY, "subject_id", PERSON)
    assert entry.details["predictions"] == 3
    assert registry.verify_audit(MODEL)[0].intact
    assert report.trained_on_log == []  # trained from a file outside the log


def test_erasure_refuses_a_column_that_is_not_a_subject_key(
    registered: tuple[Path, str], tmp_path: Path
) -> None:
    from modelcycle.errors import ModelcycleError
    from modelcycle.records import erase_subject

    _, url = registered
    root = tmp_path / "predictions"
    owners = _log(root, [PERSON, "R-7"], pseudonymise=False)
    registry = Registry(url)
    entries = len(registry.audit_log(MODEL))
    with pytest.raises(ModelcycleError, match=r"'age' is not a subject key.*subject_id"):
        erase_subject(registry, str(root), MODEL, "age", "30", KEY, actor="test")
    assert set(read_predictions(str(root), MODEL)["id"]) == set(owners)
    assert len(registry.audit_log(MODEL)) == entries


def test_a_subject_key_cannot_also_be_a_feature(small_parquet: Path) -> None:
    from modelcycle.config import parse_config

    raw = small_config_dict(small_parquet)
    raw["subject_keys"] = ["age"]
    with pytest.raises(Exception, match="subject_keys \\['age'\\]"):
        parse_config(raw)
