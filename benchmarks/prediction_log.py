"""The prediction log's group commit against one fsync per record, measured in the same run.

Closed loop: N submitter threads each submit one single-row prediction record and wait for
its future (what a request handler does), for `--seconds` per point. Three writers, interleaved
at each concurrency, each into a fresh folder:

- `fsync-per-record` (the baseline): the same CRC frame appended and fsynced under a lock by
  the submitting thread, as a straightforward durable logger does;
- `strict`: `PredictionLog(durability="strict")`, the future resolves once the group's fsync
  returned;
- `relaxed`: `PredictionLog(durability="relaxed")`, the future resolves once queued.

It prints records/s, per-submit latency p50/p99 and the ratios against the baseline, counts
the acknowledged records missing from the log (read back), then times `known_ids` (one id, warm
index) on segments and on compacted Parquet:

    .venv/bin/python benchmarks/prediction_log.py
    .venv/bin/python benchmarks/prediction_log.py --concurrency 1,8,32,64 --seconds 5 --rounds 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

from modelcycle.logstore import KIND_PREDICTIONS, encode_frame
from modelcycle.serving import LogOverloaded, PredictionLog, compact, read_predictions

MODEL = "gss-income"


def _record(worker: int, i: int) -> dict:
    millis = int(time.time() * 1000)
    value = (millis << 80) | (0x7 << 76) | (0b10 << 62) | (worker << 40) | i
    text = f"{value:032x}"
    return {
        "id": f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}",
        "time": datetime.now(UTC).isoformat(),
        "model": MODEL,
        "version": 1,
        "request_id": f"req-{worker}-{i}",
        "role": "champion",
        "inputs": {"age": 41.0, "educ": 16, "sex": "female", "region": "pacific", "hours": None},
        "outputs": {"label": ">50k", "probabilities": {"<=50k": 0.31, ">50k": 0.69}},
        "latency_ms": 4.2,
        "flags": ["missing:hours"],
    }


class FsyncPerRecord:
    """The baseline: write and fsync each submit under a lock, in the caller's thread."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(folder / "log.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def submit_predictions(self, records: list[dict]) -> Future[None]:
        frame = encode_frame(KIND_PREDICTIONS, records)
        with self._lock:
            os.write(self._fd, frame)
            os.fsync(self._fd)
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def close(self) -> None:
        os.close(self._fd)


def _run_point(submit: Callable[[list[dict]], Future[None]], threads: int, seconds: float):
    latencies: list[list[float]] = [[] for _ in range(threads)]
    acknowledged: list[list[str]] = [[] for _ in range(threads)]
    overloaded = [0] * threads
    stop = time.perf_counter() + seconds

    errors: list[BaseException] = []

    def submitter(n: int) -> None:
        try:
            _submit_until(n)
        except BaseException as exc:  # a failed submit must fail the benchmark, not a thread
            errors.append(exc)

    def _submit_until(n: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            record = _record(n, i)
            i += 1
            started = time.perf_counter()
            try:
                submit([record]).result()
            except LogOverloaded:
                overloaded[n] += 1
                continue
            latencies[n].append(time.perf_counter() - started)
            acknowledged[n].append(record["id"])

    workers = [threading.Thread(target=submitter, args=(n,)) for n in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    flat = sorted(x for per in latencies for x in per)
    ids = [x for per in acknowledged for x in per]
    return {
        "records_per_s": len(flat) / elapsed,
        "p50_ms": 1000 * flat[len(flat) // 2],
        "p99_ms": 1000 * flat[min(len(flat) - 1, int(len(flat) * 0.99))],
        "acknowledged": ids,
        "overloaded": sum(overloaded),
    }


def _measure(mode: str, folder: Path, threads: int, seconds: float, wait_ms: float) -> dict:
    if mode == "fsync-per-record":
        baseline = FsyncPerRecord(folder)
        result = _run_point(baseline.submit_predictions, threads, seconds)
        baseline.close()
        return result
    log = PredictionLog(str(folder), "bench", mode, max_batch_wait_ms=wait_ms)  # type: ignore[arg-type]
    log.start()
    result = _run_point(log.submit_predictions, threads, seconds)
    log.close()
    logged = read_predictions(str(folder), MODEL)
    result["missing"] = len(set(result["acknowledged"]) - set(logged["id"]))
    return result


def _known_ids_timing(folder: Path, records: int) -> dict[str, float]:
    """known_ids for one id from another worker: in segments, then after compaction."""
    with PredictionLog(str(folder), "writer", max_pending=records + 1) as log:
        batch = [_record(1, i) for i in range(records)]
        for start in range(0, records, 1000):
            log.submit_predictions(batch[start : start + 1000])
    ids = [r["id"] for r in batch]
    out = {}
    reader = PredictionLog(str(folder), "reader")
    started = time.perf_counter()
    reader.known_ids(MODEL, [ids[0]])
    out["segments, first call (builds index) ms"] = 1000 * (time.perf_counter() - started)
    out["segments, warm ms (p50 of 200)"] = _p50(lambda i: reader.known_ids(MODEL, [ids[i]]))
    compact(str(folder), MODEL)
    fresh = PredictionLog(str(folder), "fresh")
    out["compacted Parquet ms (p50 of 200)"] = _p50(lambda i: fresh.known_ids(MODEL, [ids[i]]))
    return out


def _p50(call: Callable[[int], object]) -> float:
    times = []
    for i in range(200):
        started = time.perf_counter()
        call(i * 37)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=2.0, help="per point and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="max_batch_wait_ms")
    parser.add_argument("--known-ids-records", type=int, default=100_000)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    print(
        f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start, "
        f"max_batch_wait_ms {args.batch_wait_ms}, {args.rounds} rounds of {args.seconds} s"
    )
    print(
        f"{'submitters':>10} {'writer':>17} {'records/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'x records/s':>11} {'x p50':>7} {'x p99':>7} {'acked':>7} {'missing':>7} {'503':>5}"
    )
    with tempfile.TemporaryDirectory(prefix="prediction-log-bench-") as tmp:
        for level in levels:
            rounds = []
            for round_ in range(args.rounds):
                order = MODES if round_ % 2 == 0 else MODES[::-1]
                points = {}
                for mode in order:
                    folder = Path(tmp) / f"{mode}-{level}-{round_}"
                    points[mode] = _measure(mode, folder, level, args.seconds, args.batch_wait_ms)
                rounds.append(points)
            for mode in MODES:
                _print_row(level, mode, rounds)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    with tempfile.TemporaryDirectory(prefix="prediction-log-known-") as tmp:
        for what, value in _known_ids_timing(Path(tmp), args.known_ids_records).items():
            print(f"known_ids, {args.known_ids_records} records, {what}: {value:.2f}")


MODES = ["fsync-per-record", "strict", "relaxed"]


def _print_row(level: int, mode: str, rounds: list[dict[str, dict]]) -> None:
    """Medians over rounds; ratios are taken within each round (the baseline ran beside it,
    under the same disk and load: fsync time here moved 5x between consecutive seconds)."""

    def median(key: str) -> float:
        return statistics.median(r[mode][key] for r in rounds)

    def ratio(key: str) -> float:
        return statistics.median(r[mode][key] / r["fsync-per-record"][key] for r in rounds)

    acked = sum(len(r[mode]["acknowledged"]) for r in rounds)
    missing = "-" if mode == "fsync-per-record" else str(sum(r[mode]["missing"] for r in rounds))
    overloaded = sum(r[mode]["overloaded"] for r in rounds)
    print(
        f"{level:>10} {mode:>17} {median('records_per_s'):>10.0f} {median('p50_ms'):>8.2f} "
        f"{median('p99_ms'):>8.2f} {ratio('records_per_s'):>11.1f} {ratio('p50_ms'):>7.2f} "
        f"{ratio('p99_ms'):>7.2f} {acked:>7} {missing:>7} {overloaded:>5}"
    )


if __name__ == "__main__":
    main()
