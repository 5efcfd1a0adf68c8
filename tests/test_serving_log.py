"""The prediction log loses nothing: every acknowledged record is read back exactly once, after
threads, several processes, kill -9 of a writer, torn tails, damaged segments and a compaction
killed half way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from modelcycle.logstore import iter_frames, list_segments
from modelcycle.serving import (
    LogOverloaded,
    LogRecordError,
    LogWriteError,
    PredictionLog,
    compact,
    read_feedback,
    read_predictions,
)

REPO = Path(__file__).resolve().parent.parent
MODEL = "gss-income"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

# A writer process: the records it submits, and (when asked) each id once it is acknowledged.
WRITER = """
import sys
from datetime import UTC, datetime
from modelcycle.serving import PredictionLog
root, worker, count, print_acks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"

def record(i):
    return {"id": f"{worker}-{i:07d}", "time": datetime.now(UTC).isoformat(), "model": "gss-income",
            "version": 1, "request_id": f"req-{i}", "role": "champion",
            "inputs": {"age": i % 90, "region": "pacific"},
            "outputs": {"label": ">50k", "probabilities": {"<=50k": 0.25, ">50k": 0.75}},
            "latency_ms": 1.0, "flags": []}

log = PredictionLog(root, worker, max_batch_wait_ms=1.0)
log.start()
in_flight = []
i = 0
while count < 0 or i < count:
    batch = [record(i + j) for j in range(3)]
    i += 3
    in_flight.append((log.submit_predictions(batch), [r["id"] for r in batch]))
    if len(in_flight) >= 8:
        future, ids = in_flight.pop(0)
        future.result()
        if print_acks:
            print("\\n".join(ids), flush=True)
for future, ids in in_flight:
    future.result()
    if print_acks:
        print("\\n".join(ids), flush=True)
log.close()
"""

# A compactor that kills itself with SIGKILL at a chosen step.
COMPACTOR = """
import os, signal, sys
import modelcycle.logstore._compact as c
root, step = sys.argv[1], sys.argv[2]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if step == "before_rename":
    real_replace = os.replace
    def replace(src, dst):
        die()
    c.os.replace = replace
elif step == "after_first_part":
    real_publish = c.publish_parquet
    def publish(*args):
        real_publish(*args)
        die()
    c.publish_parquet = publish
elif step == "before_segment_delete":
    def unlink(path):
        die()
    c.os.unlink = unlink
c.compact(root, "gss-income")
print("not killed", flush=True)
"""


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, text=True, **kwargs)


def _uuid7(moment: datetime, n: int) -> str:
    """A UUIDv7-shaped id at `moment` (the service mints these), distinct for each n."""
    millis = int(moment.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (0b10 << 62) | n
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _record(identifier: str, moment: datetime = NOW, **changes) -> dict:
    record = {
        "id": identifier,
        "time": moment.isoformat(),
        "model": MODEL,
        "version": 2,
        "request_id": f"req-{identifier}",
        "role": "champion",
        "inputs": {"age": 41.5, "educ": 16, "sex": "female", "hours": None},
        "outputs": {"label": ">50k", "probabilities": {"<=50k": 0.3125, ">50k": 0.6875}},
        "latency_ms": 3.25,
        "flags": ["missing:hours"],
    }
    return record | changes


def _feedback(identifier: str, label: str, moment: datetime = NOW) -> dict:
    return {"id": identifier, "label": label, "time": moment.isoformat(), "model": MODEL}


def _write(root: Path, worker: str, records: list[dict], feedback: list[dict] = ()) -> None:
    with PredictionLog(str(root), worker) as log:
        log.submit_predictions(records).result(timeout=30)
        if feedback:
            log.submit_feedback(list(feedback)).result(timeout=30)


def test_every_record_from_concurrent_threads_is_read_back_once(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), "w0")
    log.start()
    submitted: list[dict] = []
    lock = threading.Lock()

    def submitter(thread: int) -> None:
        futures = []
        for i in range(150):
            batch = [
                _record(f"t{thread}-{i}-{j}", NOW + timedelta(seconds=i), version=1 + j)
                for j in range(1 + i % 3)
            ]
            futures.append(log.submit_predictions(batch))
            with lock:
                submitted.extend(batch)
        for future in futures:
            future.result(timeout=60)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.pending() == 0
    log.close()

    frame = read_predictions(str(tmp_path), MODEL)
    assert len(frame) == len(submitted) == 4 * sum(1 + i % 3 for i in range(150))
    assert sorted(frame["id"]) == sorted(r["id"] for r in submitted)
    row = frame.set_index("id").loc["t2-7-1"]
    assert row["version"] == 2
    assert row["time"] == pd.Timestamp(NOW + timedelta(seconds=7))
    assert (row["input.age"], row["input.educ"], row["input.sex"]) == (41.5, 16, "female")
    assert row["input.hours"] is None
    assert row["output.label"] == ">50k"
    assert row["output.probabilities.>50k"] == 0.6875
    assert (row["latency_ms"], row["flags"], row["role"]) == (3.25, ["missing:hours"], "champion")
    assert frame.attrs["refused"] == []


def test_several_writer_processes_each_record_once_and_known_everywhere(tmp_path: Path) -> None:
    workers = [_python(WRITER, str(tmp_path), f"p{n}", "300", "0") for n in range(3)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]

    frame = read_predictions(str(tmp_path), MODEL)
    expected = {f"p{n}-{i:07d}" for n in range(3) for i in range(300)}
    assert len(frame) == 900 and set(frame["id"]) == expected
    names = {p.name.rsplit("-", 1)[0] for p in list_segments(tmp_path, MODEL)}
    assert names == {"p0", "p1", "p2"}  # one writer per file

    reader = PredictionLog(str(tmp_path), "reader")
    known = reader.known_ids(MODEL, ["p0-0000000", "p2-0000299", "p1-9999999"])
    assert known == {
        "p0-0000000": {"version": 1, "feedback": None},
        "p2-0000299": {"version": 1, "feedback": None},
    }


def test_kill_9_of_a_writer_loses_no_acknowledged_record(tmp_path: Path) -> None:
    writer = _python(WRITER, str(tmp_path), "victim", "-1", "1", stdout=subprocess.PIPE)
    acknowledged = []
    assert writer.stdout is not None
    for line in writer.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) >= 600:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    acknowledged += [line.strip() for line in writer.stdout.read().splitlines()]
    assert writer.returncode == -signal.SIGKILL

    logged = read_predictions(str(tmp_path), MODEL)
    assert set(acknowledged) <= set(logged["id"])
    assert [p.suffix for p in list_segments(tmp_path, MODEL)] == [".open"]  # never sealed

    report = compact(str(tmp_path), MODEL)  # seals the dead writer's segment, cuts its tail
    assert report.refused == [] and len(report.segments) == 1
    after = read_predictions(str(tmp_path), MODEL)
    assert sorted(after["id"]) == sorted(logged["id"])
    assert list_segments(tmp_path, MODEL) == []


def _frame_ends(path: Path) -> list[int]:
    return [end for _, _, end in iter_frames(path.read_bytes(), 0)]


def test_a_torn_tail_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    records = [_record(f"a{i}") for i in range(5)]
    with PredictionLog(str(tmp_path), "w1") as log:
        for record in records:
            log.submit_predictions([record]).result(timeout=30)
    (sealed,) = list_segments(tmp_path, MODEL)
    ends = _frame_ends(sealed)  # header, five batches, end
    # A crash in the middle of writing the fifth batch, then zeros the disk never filled in.
    torn = sealed.read_bytes()[: ends[4] + 20] + bytes(64)
    opened = sealed.with_suffix(".open")
    opened.write_bytes(torn)
    sealed.unlink()

    frame = read_predictions(str(tmp_path), MODEL)
    assert sorted(frame["id"]) == ["a0", "a1", "a2", "a3"]
    assert frame.attrs["refused"] == []
    report = compact(str(tmp_path), MODEL)
    assert report.predictions == 4 and report.refused == []
    assert sorted(read_predictions(str(tmp_path), MODEL)["id"]) == ["a0", "a1", "a2", "a3"]


@pytest.mark.parametrize("suffix", [".seg", ".open"])
def test_a_corrupted_segment_is_refused_by_name_and_the_others_read(
    tmp_path: Path, suffix: str
) -> None:
    _write(tmp_path, "good", [_record(f"g{i}") for i in range(3)])
    with PredictionLog(str(tmp_path), "bad") as log:
        for i in range(3):
            log.submit_predictions([_record(f"b{i}")]).result(timeout=30)
    damaged = next(p for p in list_segments(tmp_path, MODEL) if p.name.startswith("bad-"))
    data = bytearray(damaged.read_bytes())
    ends = _frame_ends(damaged)
    data[ends[1] + 30] ^= 0x01  # one bit inside the second batch; the third is intact
    if suffix == ".open":
        data = data[: ends[-2]]  # drop the end frame: a writer that died, then bit rot
        damaged.unlink()
        damaged = damaged.with_suffix(".open")
    damaged.write_bytes(bytes(data))

    frame = read_predictions(str(tmp_path), MODEL)
    assert sorted(frame["id"]) == ["g0", "g1", "g2"]
    (refused,) = frame.attrs["refused"]
    assert damaged.name in refused and "damaged frame" in refused

    report = compact(str(tmp_path), MODEL)
    assert len(report.refused) == 1 and damaged.name in report.refused[0]
    assert damaged.exists()  # left for a person to inspect, never half-compacted
    assert sorted(read_predictions(str(tmp_path), MODEL)["id"]) == ["g0", "g1", "g2"]


def test_overload_raises_and_writes_nothing_of_that_submit(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), "w1", max_pending=10)  # writer not started: queue fills
    log.submit_predictions([_record(f"ok{i}") for i in range(6)])
    with pytest.raises(LogOverloaded, match="limit of 10"):
        log.submit_predictions([_record(f"over{i}") for i in range(5)])
    log.submit_predictions([_record(f"ok{i}") for i in range(6, 10)])
    assert log.pending() == 10
    log.close()

    ids = set(read_predictions(str(tmp_path), MODEL)["id"])
    assert ids == {f"ok{i}" for i in range(10)}


def test_relaxed_mode_acknowledges_at_once_and_reports_what_it_may_lose(tmp_path: Path) -> None:
    relaxed = PredictionLog(str(tmp_path / "relaxed"), "w1", durability="relaxed")
    strict = PredictionLog(str(tmp_path / "strict"), "w1")
    quick = relaxed.submit_predictions([_record(f"r{i}") for i in range(7)])
    slow = strict.submit_predictions([_record(f"s{i}") for i in range(7)])
    assert quick.done() and not slow.done()
    assert (relaxed.at_risk(), relaxed.pending()) == (7, 7)
    assert (strict.at_risk(), strict.pending()) == (0, 7)

    for log in (relaxed, strict):
        log.close()
    assert slow.result(timeout=0) is None
    assert relaxed.at_risk() == 0 == strict.pending()
    assert len(read_predictions(str(tmp_path / "relaxed"), MODEL)) == 7


def _two_days_of_traffic(root: Path) -> None:
    yesterday = NOW - timedelta(days=1)
    _write(
        root,
        "w1",
        [_record(f"y{i}", yesterday + timedelta(minutes=i)) for i in range(4)]
        + [_record(f"n{i}", NOW + timedelta(minutes=i), version=3) for i in range(5)],
        [_feedback("y0", "<=50k"), _feedback("n1", ">50k", NOW + timedelta(hours=1))],
    )
    _write(root, "w2", [_record(f"m{i}", NOW, inputs={"age": 30, "educ": 12}) for i in range(3)])


def test_compaction_then_read_gives_the_same_rows(tmp_path: Path) -> None:
    _two_days_of_traffic(tmp_path)
    before = read_predictions(str(tmp_path), MODEL)
    feedback_before = read_feedback(str(tmp_path), MODEL)

    report = compact(str(tmp_path), MODEL)
    assert (report.predictions, report.feedback, report.refused) == (12, 2, [])
    assert list_segments(tmp_path, MODEL) == []
    days = sorted(p.parent.name for p in (tmp_path / MODEL / "predictions").glob("*/*.parquet"))
    assert days == ["date=2026-11-29", "date=2026-11-30", "date=2026-11-30"]
    one_part = pd.read_parquet(next((tmp_path / MODEL / "predictions").glob("date=2026-11-29/*")))
    assert sorted(one_part["id"]) == ["y0", "y1", "y2", "y3"]
    assert {"input.age", "output.probabilities.>50k", "flags", "version"} <= set(one_part.columns)

    after = read_predictions(str(tmp_path), MODEL)
    pd.testing.assert_frame_equal(before, after)
    pd.testing.assert_frame_equal(feedback_before, read_feedback(str(tmp_path), MODEL))
    assert compact(str(tmp_path), MODEL).segments == []  # idempotent
    pd.testing.assert_frame_equal(before, read_predictions(str(tmp_path), MODEL))

    today = read_predictions(str(tmp_path), MODEL, since=NOW, until=NOW + timedelta(minutes=3))
    assert sorted(today["id"]) == ["m0", "m1", "m2", "n0", "n1", "n2"]


@pytest.mark.parametrize("step", ["before_rename", "after_first_part", "before_segment_delete"])
def test_a_compaction_killed_between_steps_neither_loses_nor_duplicates(
    tmp_path: Path, step: str
) -> None:
    _two_days_of_traffic(tmp_path)
    before = read_predictions(str(tmp_path), MODEL)

    killed = _python(COMPACTOR, str(tmp_path), step, stdout=subprocess.PIPE)
    out, _ = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, out

    pd.testing.assert_frame_equal(before, read_predictions(str(tmp_path), MODEL))
    report = compact(str(tmp_path), MODEL)
    assert report.refused == []
    pd.testing.assert_frame_equal(before, read_predictions(str(tmp_path), MODEL))
    assert list_segments(tmp_path, MODEL) == []
    left = [p.name for p in (tmp_path / MODEL).rglob(".part-*")]
    assert left == []  # temporaries of the killed compaction are gone
    stored = pd.concat(pd.read_parquet(p) for p in (tmp_path / MODEL).rglob("predictions/*/*"))
    assert len(stored) == len(before) == stored["id"].nunique()


def test_known_ids_sees_other_workers_and_compacted_records(tmp_path: Path) -> None:
    ids = [_uuid7(NOW, n) for n in range(4)]
    _write(tmp_path, "w1", [_record(i) for i in ids], [_feedback(ids[0], "<=50k")])
    service = PredictionLog(str(tmp_path), "w2")
    service.start()
    unknown = _uuid7(NOW, 99)
    expected = {
        ids[0]: {"version": 2, "feedback": "<=50k"},
        ids[1]: {"version": 2, "feedback": None},
    }
    assert service.known_ids(MODEL, [ids[0], ids[1], unknown]) == expected

    service.submit_feedback([_feedback(ids[1], ">50k", NOW + timedelta(minutes=5))]).result(30)
    expected[ids[1]]["feedback"] = ">50k"
    assert service.known_ids(MODEL, [ids[0], ids[1], unknown]) == expected
    service.close()

    compact(str(tmp_path), MODEL)
    assert list_segments(tmp_path, MODEL) == []
    later = PredictionLog(str(tmp_path), "w3")  # a fresh process: only Parquet to go on
    assert later.known_ids(MODEL, [ids[0], ids[1], ids[2], unknown]) == {
        **expected,
        ids[2]: {"version": 2, "feedback": None},
    }


def test_a_bad_or_pii_record_is_refused_whole_naming_index_and_field(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), "w1", pii={"ssn"})
    broken = _record("x1")
    del broken["latency_ms"]
    with pytest.raises(
        LogRecordError, match=r"prediction record 1: missing fields \['latency_ms'\]"
    ):
        log.submit_predictions([_record("x0"), broken])
    with pytest.raises(LogRecordError, match="record 0: field 'time': expected an ISO-8601"):
        log.submit_predictions([_record("x2", time="2026-11-30 12:00")])
    leaking = _record("x3", inputs={"age": 3, "ssn": "123-45-6789"})
    with pytest.raises(
        LogRecordError, match=r"record 0: field 'inputs' carries PII column\(s\) \['ssn'\]"
    ):
        log.submit_predictions([leaking])
    with pytest.raises(LogRecordError, match="feedback record 0: field 'label'"):
        log.submit_feedback([_feedback("x0", None)])
    secret = _record("x4", inputs={"age": float("inf"), "note": "555-0100"})
    with pytest.raises(LogRecordError, match=r"record 0: field 'inputs.age': .* got float") as err:
        log.submit_predictions([secret])
    assert "555-0100" not in str(err.value)  # input values are never echoed
    assert log.pending() == 0
    log.close()
    assert read_predictions(str(tmp_path), MODEL).empty


def test_a_failed_fsync_fails_the_submit_and_every_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PredictionLog(str(tmp_path), "w1")
    log.start()
    log.submit_predictions([_record("fine")]).result(timeout=30)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(LogWriteError, match="Input/output error"):
        log.submit_predictions([_record("lost")]).result(timeout=30)
    with pytest.raises(LogWriteError):
        log.submit_predictions([_record("later")])
    monkeypatch.undo()
    log.close()
    assert list(read_predictions(str(tmp_path), MODEL)["id"]) == ["fine"]


def test_a_worker_id_is_used_by_one_live_writer_only(tmp_path: Path) -> None:
    with PredictionLog(str(tmp_path), "w1"), pytest.raises(Exception, match="'w1' is in use"):
        PredictionLog(str(tmp_path), "w1").start()


def test_compacted_parts_go_to_an_fsspec_url_and_segments_stay_local(tmp_path: Path) -> None:
    root = f"memory://log-{tmp_path.name}"
    spool = tmp_path / "spool"
    try:
        with PredictionLog(root, "w1", spool=spool) as log:
            log.submit_predictions([_record(f"u{i}") for i in range(3)]).result(timeout=30)
        assert len(list_segments(spool, MODEL)) == 1
        assert len(read_predictions(root, MODEL, spool=spool)) == 3
        report = compact(root, MODEL, spool=spool)
        assert len(report.parts) == 1 and report.parts[0].endswith(".parquet")
        assert list_segments(spool, MODEL) == []
        assert sorted(read_predictions(root, MODEL, spool=spool)["id"]) == ["u0", "u1", "u2"]
    finally:
        fsspec.filesystem("memory").rm(f"/log-{tmp_path.name}", recursive=True)


def test_queued_submits_share_one_fsync_and_numpy_outputs_are_plain_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PredictionLog(str(tmp_path), "w1")
    probabilities = np.array([0.25, 0.75])
    futures = [
        log.submit_predictions(
            [_record(f"q{i}", outputs={"label": np.int64(1), "p": probabilities[1]})]
        )
        for i in range(50)
    ]
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    log.start()
    for future in futures:
        future.result(timeout=30)
    # One for the new segment's header, one for its folder, one for all fifty submits.
    assert len(calls) == 3
    log.close()
    frame = read_predictions(str(tmp_path), MODEL)
    assert len(frame) == 50
    assert frame["output.p"].tolist() == [0.75] * 50
    assert frame["output.label"].tolist() == [1] * 50


def test_log_compact_command_compacts_every_model_and_names_a_damaged_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from modelcycle.cli import app

    monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path / "home"))
    _two_days_of_traffic(tmp_path)
    before = read_predictions(str(tmp_path), MODEL)
    first = CliRunner().invoke(app, ["log", "compact", "--root", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert f"{MODEL}: 2 segment(s) into 4 Parquet part(s) (12 predictions, 2 feedback)" in (
        first.output
    )
    assert list_segments(tmp_path, MODEL) == []
    pd.testing.assert_frame_equal(before, read_predictions(str(tmp_path), MODEL))

    with PredictionLog(str(tmp_path), "bad") as log:
        for i in range(3):
            log.submit_predictions([_record(f"b{i}")]).result(timeout=30)
    (damaged,) = list_segments(tmp_path, MODEL)
    data = bytearray(damaged.read_bytes())
    data[_frame_ends(damaged)[1] + 30] ^= 0x01
    damaged.write_bytes(bytes(data))
    second = CliRunner().invoke(app, ["log", "compact", "--root", str(tmp_path)])
    assert second.exit_code == 1
    assert damaged.name in second.output and "refused" in second.output
    assert damaged.exists()
