"""Training on the labelled prediction log: rows, lineage, refusals, and the training flow.

The log is written by the real writer (`PredictionLog`) and compacted by the real compactor,
so these tests read exactly what a service leaves on disk.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import small_config_dict, write_config

from modelcycle.config import PredictionLogSource, TrainingOverrides, load_config, log_instant
from modelcycle.data import combine_sources, load_source, read_labelled_log
from modelcycle.errors import DataError, ModelcycleError
from modelcycle.serving import IdFactory, PredictionLog, compact

MODEL = "gss-income"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def traffic(demo_parquet: Path) -> pd.DataFrame:
    """600 respondents of 2008 and 2010, as the service would have been asked about them."""
    table = pd.read_parquet(demo_parquet)
    later = table.loc[table["year"].isin([2008, 2010])]
    return later.sample(n=600, random_state=1).reset_index(drop=True)


def _inputs(row: pd.Series, columns: list[str]) -> dict[str, Any]:
    return {
        c: (None if pd.isna(row[c]) else row[c].item() if hasattr(row[c], "item") else row[c])
        for c in columns
    }


def write_traffic(
    root: Path,
    traffic: pd.DataFrame,
    columns: list[str],
    labelled: int,
    *,
    day_step: timedelta = timedelta(hours=1),
    label_of=lambda row: int(row["high_income"]),
) -> list[str]:
    """Predictions one `day_step` apart, the first `labelled` of them with feedback; compacted."""
    ids = IdFactory().new_ids(len(traffic))
    predictions, feedback = [], []
    for index, row in traffic.iterrows():
        moment = START + index * day_step
        predictions.append(
            {
                "id": ids[index],
                "time": moment.isoformat(),
                "model": MODEL,
                "version": 1,
                "request_id": f"req-{index}",
                "role": "champion",
                "inputs": _inputs(row, columns),
                "outputs": {"label": 0, "probabilities": {"0": 0.7, "1": 0.3}},
                "latency_ms": 2.0,
                "flags": [],
            }
        )
        if index < labelled:
            feedback.append(
                {
                    "id": ids[index],
                    "label": label_of(row),
                    "time": (moment + timedelta(days=3)).isoformat(),
                    "model": MODEL,
                }
            )
    log = PredictionLog(str(root), "w0")
    log.start()
    try:
        log.submit_predictions(predictions).result(timeout=60)
        if feedback:
            log.submit_feedback(feedback).result(timeout=60)
    finally:
        log.close()
    report = compact(str(root), MODEL)
    assert not report.refused and report.predictions == len(predictions)
    return ids


def _config(small_parquet: Path, tmp_path: Path, log: dict[str, Any] | None, dedupe: bool = False):
    raw = small_config_dict(small_parquet)
    raw["cleaning"]["drop_duplicates"] = dedupe
    if log is not None:
        raw["data"]["prediction_log"] = log
    return load_config(write_config(tmp_path, raw, "c.yaml"))


LOGGED = [
    "age",
    "prestg10",
    "childs",
    "occrecode",
    "wrkstat",
    "educcat",
    "maritalcat",
    "year",
    "gender",
]


def test_labelled_rows_are_the_logged_inputs_with_their_labels(
    tmp_path, traffic, small_parquet
) -> None:
    root = tmp_path / "log"
    ids = write_traffic(root, traffic, LOGGED, labelled=400)
    config = _config(small_parquet, tmp_path, {"root": str(root), "only": True})
    log = read_labelled_log(config, config.data.prediction_log)

    assert (log.predictions, log.labelled) == (600, 400)
    # Row i of the log is respondent i of the traffic: same inputs, the label as the target.
    expected = traffic.iloc[:400].reset_index(drop=True)
    for column in ["age", "occrecode", "year", "gender"]:
        pd.testing.assert_series_equal(
            log.table[column].astype(object).where(log.table[column].notna(), None),
            expected[column].astype(object).where(expected[column].notna(), None),
            check_names=False,
            check_dtype=False,
        )
    assert log.table["high_income"].tolist() == expected["high_income"].astype(int).tolist()
    # As the file's integer column loads: a float target would turn the classes into 0.0/1.0.
    assert log.table["high_income"].dtype == expected["high_income"].dtype == "int64"
    assert "respondent_id" not in log.table.columns  # PII is never a log column
    assert len(ids) == 600

    # Lineage: every part read, with the SHA-256 of its bytes as they are on disk.
    lineage = log.lineage()
    assert lineage["labelled_rows"] == 400 and lineage["parts"]
    for part in lineage["parts"]:
        assert hashlib.sha256(Path(part["path"]).read_bytes()).hexdigest() == part["sha256"]
    kinds = {part["kind"] for part in lineage["parts"]}
    assert kinds == {"predictions", "feedback"}


def test_the_time_range_selects_predictions_by_their_time(tmp_path, traffic, small_parquet) -> None:
    root = tmp_path / "log"
    # One prediction a day: 600 days, each in its own partition.
    write_traffic(root, traffic, LOGGED, labelled=600, day_step=timedelta(days=1))
    since, until = START + timedelta(days=100), START + timedelta(days=150)
    source = {
        "root": str(root),
        "only": True,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    config = _config(small_parquet, tmp_path, source)
    log = read_labelled_log(config, config.data.prediction_log)
    assert log.labelled == 50  # days 100..149
    days = {p["date"] for p in log.lineage()["parts"] if p["kind"] == "predictions"}
    assert min(days) == since.date().isoformat() and max(days) == until.date().isoformat()


def test_feedback_of_another_model_is_never_joined(tmp_path, traffic, small_parquet) -> None:
    root = tmp_path / "log"
    ids = write_traffic(root, traffic.iloc[:50].reset_index(drop=True), LOGGED, labelled=0)
    # Labels for the same ids, but sent for another model: they land in that model's log.
    log = PredictionLog(str(root), "w1")
    log.start()
    try:
        log.submit_feedback(
            [{"id": i, "label": 1, "time": START.isoformat(), "model": "other-model"} for i in ids]
        ).result(timeout=30)
    finally:
        log.close()
    compact(str(root), "other-model")
    config = _config(small_parquet, tmp_path, {"root": str(root), "only": True})
    with pytest.raises(DataError, match=r"none of its 50 predictions has a feedback label"):
        read_labelled_log(config, config.data.prediction_log)


def test_no_labelled_row_in_the_range_is_one_clear_line(tmp_path, traffic, small_parquet) -> None:
    root = tmp_path / "log"
    write_traffic(root, traffic.iloc[:20].reset_index(drop=True), LOGGED, labelled=20)
    later = {"root": str(root), "only": True, "since": "2027-01-01"}
    config = _config(small_parquet, tmp_path, later)
    with pytest.raises(DataError) as caught:
        read_labelled_log(config, config.data.prediction_log)
    message = str(caught.value)
    assert "\n" not in message and "no predictions in the range" in message
    assert str(root) in message


def test_a_corrupted_part_is_refused_by_name(tmp_path, traffic, small_parquet) -> None:
    root = tmp_path / "log"
    write_traffic(root, traffic.iloc[:30].reset_index(drop=True), LOGGED, labelled=30)
    (part, *_) = sorted((root / MODEL / "predictions").rglob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:100])  # truncated, as a failed copy leaves it
    config = _config(small_parquet, tmp_path, {"root": str(root), "only": True})
    with pytest.raises(DataError, match=rf"{part.name}: prediction log part is unreadable"):
        read_labelled_log(config, config.data.prediction_log)


def test_labels_outside_the_classes_are_refused(tmp_path, traffic, small_parquet) -> None:
    root = tmp_path / "log"
    write_traffic(
        root,
        traffic.iloc[:30].reset_index(drop=True),
        LOGGED,
        labelled=30,
        label_of=lambda row: 7 if row.name == 3 else int(row["high_income"]),
    )
    config = _config(small_parquet, tmp_path, {"root": str(root), "only": True})
    with pytest.raises(DataError, match=r"label\(s\) \['7'\] are not classes of target"):
        read_labelled_log(config, config.data.prediction_log)


def test_a_numeric_time_column_that_was_not_logged_is_refused(
    tmp_path, traffic, small_parquet
) -> None:
    root = tmp_path / "log"
    without_year = [c for c in LOGGED if c != "year"]
    write_traffic(root, traffic.iloc[:30].reset_index(drop=True), without_year, labelled=30)
    config = _config(small_parquet, tmp_path, {"root": str(root), "only": True})
    with pytest.raises(DataError, match=r"time column 'year' was not logged"):
        read_labelled_log(config, config.data.prediction_log)


def test_appended_rows_follow_the_file_rows(tmp_path, traffic, small_parquet) -> None:
    root = tmp_path / "log"
    write_traffic(root, traffic.iloc[:100].reset_index(drop=True), LOGGED, labelled=100)
    config = _config(small_parquet, tmp_path, {"root": str(root)}, dedupe=True)
    file_rows = load_source(config, Path(config.data.source))
    rows = combine_sources(config, file_rows, config.data.source)
    assert len(rows.table) == len(file_rows.table) + 100
    assert rows.table["year"].iloc[-100:].isin([2008, 2010]).all()
    assert rows.table["year"].iloc[: len(file_rows.table)].max() <= 2000
    assert str(root) in rows.source and str(small_parquet) in rows.source
    assert rows.duplicated is not None and not rows.duplicated.iloc[-100:].any()


def test_the_drift_event_can_name_the_log_as_training_data() -> None:
    from modelcycle.config import Monitoring

    assert Monitoring().retrain_overrides() == {}
    overrides = Monitoring(retrain_data="log").retrain_overrides()
    parsed = TrainingOverrides.model_validate(overrides)
    assert parsed.prediction_log == PredictionLogSource(only=True)
    both = TrainingOverrides.model_validate(
        Monitoring(retrain_data="source_and_log").retrain_overrides()
    )
    assert both.prediction_log is not None and not both.prediction_log.only


def test_a_verdict_on_a_log_range_asks_for_that_range() -> None:
    """A drift found on the log retrains on the labelled traffic that drifted, in a closed
    range; a file verdict (no range) and `source` ask for nothing of the kind."""
    from datetime import timezone

    from modelcycle.config import Monitoring

    since = datetime(2026, 3, 1, 12, tzinfo=UTC)
    until = datetime(2026, 3, 8, 14, tzinfo=timezone(timedelta(hours=2)))  # 12:00 UTC
    parsed = TrainingOverrides.model_validate(
        Monitoring(retrain_data="log").retrain_overrides(since, until)
    )
    assert parsed.prediction_log is not None
    assert parsed.prediction_log.only
    assert log_instant(parsed.prediction_log.since) == since
    assert log_instant(parsed.prediction_log.until) == datetime(2026, 3, 8, 12, tzinfo=UTC)
    # The first log run of a model has no start: everything before its end.
    opened = Monitoring(retrain_data="log").retrain_overrides(None, until)
    assert "since" not in opened["prediction_log"] and "until" in opened["prediction_log"]
    assert Monitoring().retrain_overrides(since, until) == {}


def test_since_after_until_is_refused() -> None:
    with pytest.raises(ValueError, match=r"since .* is not before until"):
        PredictionLogSource(since="2026-03-02", until="2026-03-01")


def _pinned(source: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {**source, "parts": [{"path": p["path"], "sha256": p["sha256"]} for p in parts]}


def test_pinned_parts_are_read_exactly_and_a_changed_or_missing_one_is_refused(
    tmp_path, traffic, small_parquet
) -> None:
    import shutil

    import pyarrow.parquet as pq

    from modelcycle.records import check_recorded_parts

    root = tmp_path / "log"
    # Three days of traffic, one partition a day; then later traffic in the same open range.
    write_traffic(root, traffic.iloc[:72].reset_index(drop=True), LOGGED, labelled=72)
    source = {"root": str(root), "only": True, "since": START.isoformat()}
    config = _config(small_parquet, tmp_path, source)
    recorded = read_labelled_log(config, config.data.prediction_log)
    parts = recorded.lineage()["parts"]
    write_traffic(root, traffic.iloc[100:130].reset_index(drop=True), LOGGED, labelled=30)
    assert read_labelled_log(config, config.data.prediction_log).labelled == 72 + 30

    pinned = _config(small_parquet, tmp_path, _pinned(source, parts))
    again = read_labelled_log(pinned, pinned.data.prediction_log)
    pd.testing.assert_frame_equal(again.table, recorded.table)
    assert again.lineage()["parts"] == parts
    # The pin is how the re-run reads, not what the config says: unpinned, it dumps as before.
    assert "parts" not in config.model_dump(mode="json")["data"]["prediction_log"]

    # A part rewritten without one row, as an erasure leaves it: refused by name, one line.
    changed = Path(next(p["path"] for p in parts if p["kind"] == "predictions"))
    table = pq.read_table(changed)
    pq.write_table(table.slice(1), changed)
    with pytest.raises(DataError) as caught:
        read_labelled_log(pinned, pinned.data.prediction_log)
    message = str(caught.value)
    assert message.startswith(f"{changed}: ") and "\n" not in message
    assert "not the recorded" in message and "privacy erase" in message

    # Its day removed, as retention removes a partition: named missing, here and in the
    # reproduction's own check (which adds the audit entry when one explains it: none here).
    shutil.rmtree(changed.parent)
    with pytest.raises(DataError, match=rf"{changed}: prediction log part is missing"):
        read_labelled_log(pinned, pinned.data.prediction_log)
    with pytest.raises(ModelcycleError) as refused:
        check_recorded_parts(pinned.model_dump(mode="json"), [], f"{MODEL} v7")
    message = str(refused.value)
    assert message.startswith(f"{MODEL} v7: cannot be reproduced") and "\n" not in message
    assert f"{changed}: prediction log part is missing" in message
    assert "audit entry" not in message


def test_a_pin_outside_the_models_log_is_refused(tmp_path, traffic, small_parquet) -> None:
    root = tmp_path / "log"
    write_traffic(root, traffic.iloc[:10].reset_index(drop=True), LOGGED, labelled=10)
    stray = {"path": str(small_parquet), "sha256": "0" * 64}
    config = _config(small_parquet, tmp_path, {"root": str(root), "only": True, "parts": [stray]})
    with pytest.raises(DataError, match=rf"parts: {small_parquet} is not a part of 'gss-income'"):
        read_labelled_log(config, config.data.prediction_log)


def test_training_flow_fine_tunes_on_the_labelled_log_and_records_its_parts(
    tmp_path, traffic, small_config, state, prefect_harness, monkeypatch
) -> None:
    import json

    import yaml

    from flows.training import training
    from modelcycle.registry import Registry

    root = tmp_path / "log"
    people = traffic.assign(subject_id=[f"R-{i}" for i in range(len(traffic))])
    write_traffic(root, people, [*LOGGED, "subject_id"], labelled=500)
    raw = yaml.safe_load(small_config.read_text())
    raw["subject_keys"] = ["subject_id"]  # erasable by it (logged, never a feature)
    small_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    first = training(config_path=str(small_config))
    assert (first["version"], first["status"]) == (1, "champion")

    overrides = TrainingOverrides(prediction_log=PredictionLogSource(root=str(root), only=True))
    second = training(config_path=str(small_config), mode="fine_tune", overrides=overrides)
    registry = Registry(state.registry_url)
    try:
        version = registry.get_version(MODEL, second["version"])
    finally:
        registry.close()
    assert version.parent_version == 1
    folder = Path(version.artifact_uri.removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    lineage = manifest.get("metadata", manifest)["prediction_log"]
    assert lineage["labelled_rows"] == 500 and lineage["only"] is True
    for part in lineage["parts"]:
        assert hashlib.sha256(Path(part["path"]).read_bytes()).hexdigest() == part["sha256"]
    # The 500 labelled rows, split by time, are all the run trained and judged on.
    profile = json.loads((folder / "profile.json").read_text())
    assert profile["train"]["rows"] + profile["holdout"]["rows"] == 500

    # Erasing a person whose labelled answers v2 learned from lists v2 (v1 came from a file);
    # the rewritten part then refuses v2's reproduction by name, before anything is trained.
    from modelcycle.cli import _reproduce
    from modelcycle.records import HopStatus, apply_retention, erase_subject, trace_version

    registry = Registry(state.registry_url)
    try:
        # The trace's data hop re-reads the log's recorded parts (not the config's file source).
        (data_hop,) = [
            h for h in trace_version(version, registry, state.data_dir) if h.name == "data"
        ]
        assert data_hop.status is HopStatus.VERIFIED, data_hop.detail
        report = erase_subject(
            registry, str(root), MODEL, "subject_id", "R-3", b"k" * 32, actor="test"
        )
        assert report.predictions == 1 and report.feedback == 1
        assert report.trained_on_log == [second["version"]]
        (rewritten,) = {p for p in report.parts if "/predictions/" in p}
        assert rewritten in {p["path"] for p in lineage["parts"]}
        (data_hop,) = [
            h for h in trace_version(version, registry, state.data_dir) if h.name == "data"
        ]
        assert data_hop.status is HopStatus.UNVERIFIED and rewritten in data_hop.detail

        def no_training(**kwargs: Any) -> None:
            raise AssertionError("the re-run trained although a recorded part had changed")

        monkeypatch.setattr("flows.training.training", no_training)
        with pytest.raises(ModelcycleError) as refused:
            _reproduce.reproduce_version(MODEL, second["version"])
        message = str(refused.value)
        assert f"{rewritten}: prediction log part has SHA-256" in message and "\n" not in message
        assert "`modelcycle privacy erase` rewrote it" in message
        # Every day of the log past retention and removed: the first recorded part is named
        # missing, with the retention's audit entry.
        apply_retention(registry, str(root), MODEL, days=1, actor="test")
        with pytest.raises(ModelcycleError) as refused:
            _reproduce.reproduce_version(MODEL, second["version"])
        message = str(refused.value)
        assert f"{lineage['parts'][0]['path']}: prediction log part is missing" in message
        assert "retention removed its day" in message
        assert [v.version for v in registry.list_versions(MODEL)] == [1, 2]
        assert not [e for e in registry.audit_log(MODEL) if e.action == "reproduce"]
    finally:
        registry.close()
