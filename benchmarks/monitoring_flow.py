"""The whole monitoring flow on a 1,000,000-row window of the demo model's features.

    python benchmarks/monitoring_flow.py [--rows 1000000] [--data path/to/gss_wages.parquet]
                                         [--source file,log]

Trains the demo model (search skipped) in a temporary MODELCYCLE_HOME, so the temporary
Prefect server is already up; then builds a window by resampling the unseen years
2008-2018 with replacement to `--rows` rows, and times the monitoring flow on it twice (the
first run also pays for importing Evidently). Prints the wall time of each run, every task's
run time as Prefect recorded it, the peak RSS of the process, and the load average.

With `log` in `--source`, the same rows are also written as the model's prediction log, as
the service would have logged them: the champion's answers (scored once, at set-up), the
inputs with the sensitive column, a latency per request and every row's true label sent
back as feedback, compacted into date-partitioned Parquet parts (the on-disk layout
`modelcycle.logstore.compact` writes; checked column for column against a real compaction of
a few records). The flow then runs on the log twice (`source="log"`, no re-scoring), and the
log/file ratio of the second runs is printed: goal <= 8 s for the log and >= 2x faster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.drift_engine import PeakRss

REPO = Path(__file__).resolve().parent.parent


def _task_times(flow_run_id: str) -> list[tuple[str, float]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(
        ((r.name.rsplit("-", 1)[0], r.total_run_time.total_seconds()) for r in runs),
        key=lambda item: -item[1],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="A prepared gss_wages.parquet to copy.")
    parser.add_argument("--source", default="file,log", help="file, log or both (file,log).")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="modelcycle-monitoring-bench-"))
    os.environ["MODELCYCLE_HOME"] = str(home / "state")
    try:
        run(args, home / "state")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, state: Path) -> None:
    import pandas as pd

    from modelcycle.cli import prepare_prefect_env

    settings = prepare_prefect_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if args.data:
        shutil.copy(args.data, settings.data_dir / "gss_wages.parquet")

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.monitoring import monitoring
    from flows.training import training
    from modelcycle.config import TrainingOverrides
    from modelcycle.data import ensure_demo_file

    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()}")
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        start = time.perf_counter()
        trained = training(
            config_path=str(REPO / "configs" / "demo.yaml"),
            overrides=TrainingOverrides(skip_search=True),
        )
        print(f"training (demo config, no search): {time.perf_counter() - start:.1f} s")

        table = pd.read_parquet(ensure_demo_file(settings.data_dir))
        unseen = table.loc[table["year"] >= 2008].drop(columns=["realrinc"])
        window = unseen.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)
        path = settings.data_dir / "windows" / "gss-bench.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        window.to_parquet(path, index=False)
        size = path.stat().st_size / 1e6
        print(f"window: {len(window):,} rows x {window.shape[1]} columns, {size:.0f} MB parquet")
        del window, table, unseen

        sources = [s.strip() for s in args.source.split(",") if s.strip()]
        bounds = {}
        if "log" in sources:
            start = time.perf_counter()
            bounds = write_log(trained, path, settings.home / "predictions")
            print(f"prediction log written: {time.perf_counter() - start:.1f} s (set-up)")
        last: dict[str, float] = {}
        for source in sources:
            for attempt in (1, 2):
                params = {"window": str(path)} if source == "file" else {"source": "log", **bounds}
                with PeakRss() as memory:
                    start = time.perf_counter()
                    state_obj = monitoring(model_name=trained["model"], return_state=True, **params)
                    seconds = time.perf_counter() - start
                outcome = state_obj.result()
                last[source] = seconds
                print(
                    f"monitoring {source} run {attempt}: {seconds:.1f} s wall, status "
                    f"{outcome['status']}, drifted {outcome['drifted_columns']}, realised "
                    f"accuracy {(outcome['quality'] or {}).get('realised', {}).get('accuracy')}, "
                    f"peak RSS {memory.peak / 1e6:.0f} MB (+{memory.added_mb:.0f} MB), "
                    f"load average {os.getloadavg()}"
                )
                for name, task_seconds in _task_times(str(state_obj.state_details.flow_run_id)):
                    print(f"    {name:<28} {task_seconds:6.2f} s")
        if {"file", "log"} <= set(last):
            print(
                f"second runs: log {last['log']:.1f} s (goal <= 8 s), file {last['file']:.1f} s, "
                f"file/log {last['file'] / last['log']:.2f}x (goal >= 2x)"
            )


def _uuid7(millis: np.ndarray, serial: np.ndarray) -> list[str]:
    """Time-ordered ids shaped as the service mints them (UUIDv7)."""
    out = []
    for ms, n in zip(millis.tolist(), serial.tolist(), strict=True):
        text = f"{(ms << 80) | (0x7 << 76) | (0b10 << 62) | n:032x}"
        out.append(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")
    return out


def _check_layout(root: Path, model: str, frame: Any, labels: Any) -> None:
    """The generated parts read back with the same columns and dtypes as a real compaction."""
    from modelcycle.logstore import compact, read_feedback, read_predictions
    from modelcycle.serving import PredictionLog

    real = root.parent / "layout-check"
    records = []
    for i, row in enumerate(frame.head(5).to_dict(orient="records")):
        records.append(
            {
                "id": row["id"],
                "time": row["time"].isoformat(),
                "model": model,
                "version": int(row["version"]),
                "request_id": row["request_id"],
                "role": row["role"],
                "inputs": {
                    k.removeprefix("input."): v for k, v in row.items() if k.startswith("input.")
                },
                "outputs": {
                    "label": row["output.label"],
                    "probabilities": {
                        "0": row["output.probabilities.0"],
                        "1": row["output.probabilities.1"],
                    },
                },
                "latency_ms": row["latency_ms"],
                "flags": list(row["flags"]),
            }
        )
        records[-1]["inputs"] = {
            k: (None if isinstance(v, float) and v != v else v)
            for k, v in records[-1]["inputs"].items()
        }
        del i
    feedback = [
        {"id": r["id"], "label": int(r["label"]), "time": r["time"].isoformat(), "model": model}
        for r in labels.head(5).to_dict(orient="records")
    ]
    with PredictionLog(str(real), "layout") as log:
        log.submit_predictions(records).result()
        log.submit_feedback(feedback).result()
    compact(str(real), model)
    for reader in (read_predictions, read_feedback):
        mine = reader(str(root), model).head(5)
        theirs = reader(str(real), model)
        assert list(mine.columns) == list(theirs.columns), (mine.columns, theirs.columns)
        for column in mine.columns:
            if column != "flags":
                assert mine[column].dtype == theirs[column].dtype, column
    shutil.rmtree(real)


def write_log(trained: dict[str, Any], path: Path, root: Path) -> dict[str, Any]:
    """The window's rows as the model's compacted prediction log, with every label."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelcycle.artifacts import load_model
    from modelcycle.registry import Registry
    from modelcycle.settings import get_settings

    model = trained["model"]
    record = Registry(get_settings().registry_url).get_version(model, trained["version"])
    pipeline = load_model(record.model_location, record.model_sha256)
    from modelcycle import monitoring
    from modelcycle.config import load_config

    config = load_config(REPO / "configs" / "demo.yaml")
    window = pd.read_parquet(path)
    features = config.features.all
    typed = monitoring.model_inputs(window, config)  # as the service's schema types them
    proba = monitoring.score(pipeline, typed, config).proba[:, 1]
    rows = len(window)
    start = pd.Timestamp("2026-06-01T00:00:00Z")
    days = 10
    offsets = np.sort(np.random.default_rng(0).uniform(0, days * 86_400, rows))
    times = start + pd.to_timedelta(offsets, unit="s")
    millis = (times.asi8 // 1_000_000).astype("int64")
    ids = _uuid7(millis, np.arange(rows))
    frame = pd.DataFrame(
        {
            "id": ids,
            "time": times,
            "model": model,
            "version": int(record.version),
            "request_id": [f"req-{i // 4}" for i in range(rows)],  # 4 rows a request
            "role": "champion",
            "latency_ms": np.random.default_rng(1).gamma(4.0, 3.0, rows).round(3),
            "flags": [[] for _ in range(rows)],
            **{f"input.{c}": typed[c].to_numpy() for c in features},
            "input.gender": window["gender"].to_numpy(),
            "output.label": (proba >= 0.5).astype("int64"),
            "output.probabilities.0": 1.0 - proba,
            "output.probabilities.1": proba,
        }
    )
    labels = pd.DataFrame(
        {
            "id": ids,
            "label": window["high_income"].to_numpy().astype("int64"),
            "time": times + pd.Timedelta(days=2),
            "model": model,
        }
    )
    for kind, table in (("predictions", frame), ("feedback", labels)):
        day = table["time"].dt.date
        for number, (when, part) in enumerate(table.groupby(day, sort=True)):
            for chunk, piece in enumerate(np.array_split(part, 4)):
                folder = root / model / kind / f"date={when.isoformat()}"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"part-bench{chunk}-{number:020d}.parquet"
                pq.write_table(pa.Table.from_pandas(piece, preserve_index=False), folder / name)
    _check_layout(root, model, frame, labels)
    return {
        "since": start.to_pydatetime(),
        "until": (start + pd.Timedelta(days=days)).to_pydatetime(),
    }


if __name__ == "__main__":
    main()
