"""The whole monitoring flow on a 1,000,000-row window of the demo model's features.

    python benchmarks/monitoring_flow.py [--rows 1000000] [--data path/to/gss_wages.parquet]

Trains the demo model (search skipped) in a temporary MODELCYCLE_HOME, so the temporary
Prefect server is already up; then builds a window by resampling the unseen years
2008-2018 with replacement to `--rows` rows, and times the monitoring flow on it twice (the
first run also pays for importing Evidently). Prints the wall time of each run, every task's
run time as Prefect recorded it, the peak RSS of the process, and the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

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

        for attempt in (1, 2):
            with PeakRss() as memory:
                start = time.perf_counter()
                state_obj = monitoring(
                    model_name=trained["model"], window=str(path), return_state=True
                )
                seconds = time.perf_counter() - start
            outcome = state_obj.result()
            print(
                f"monitoring run {attempt}: {seconds:.1f} s wall, status {outcome['status']}, "
                f"drifted {outcome['drifted_columns']}, peak RSS {memory.peak / 1e6:.0f} MB "
                f"(+{memory.added_mb:.0f} MB), load average {os.getloadavg()}"
            )
            for name, task_seconds in _task_times(str(state_obj.state_details.flow_run_id)):
                print(f"    {name:<28} {task_seconds:6.2f} s")


if __name__ == "__main__":
    main()
