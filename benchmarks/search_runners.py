"""The hyperparameter search on each Prefect task runner, against a sequential baseline.

The demo pipeline's search (configs/demo.yaml: 4 candidates x 3 folds of HistGradientBoosting
on the 1974-2000 survey years) runs through the `train-model` task inside a flow, with
`model.search.runner` set to threads/1 worker (the baseline), threads/2, and dask/2, in that
order per repeat, all in one process under a temporary Prefect server:

    .venv/bin/python benchmarks/search_runners.py              # 3 repeats
    .venv/bin/python benchmarks/search_runners.py --repeat 1 --runners threads:1,dask:2
    .venv/bin/python benchmarks/search_runners.py --wide --repeat 1   # 12 candidates

Prints the median wall time of the task (search + refit), the ratio to the baseline and the
SHA-256 of the model file (the same for every runner, or the script exits non-zero).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _setup_env(home: Path) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ["MODELCYCLE_HOME"] = str(home / "state")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--runners", default="threads:1,threads:2,dask:2")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per fit")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="a 12-candidate grid (learning_rate x max_leaf_nodes) instead of the demo's 4",
    )
    args = parser.parse_args()
    runners = [(k, int(n)) for k, n in (item.split(":") for item in args.runners.split(","))]

    home = Path(tempfile.mkdtemp(prefix="modelcycle-search-bench-"))
    _setup_env(home)
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from modelcycle import data
    from modelcycle.artifacts import dump_model, sha256_bytes
    from modelcycle.config import load_config
    from modelcycle.data import ensure_demo_file
    from modelcycle.settings import get_settings
    from tasks.training import train_model

    base = load_config(REPO / "configs" / "demo.yaml")
    if args.wide:
        space = {"learning_rate": [0.03, 0.05, 0.1, 0.2], "max_leaf_nodes": [15, 31, 63]}
        wide = base.model.search.model_copy(update={"space": space})
        base = base.model_copy(update={"model": base.model.model_copy(update={"search": wide})})
    source = ensure_demo_file(get_settings().data_dir)
    table, _ = data.clean(data.load_table(base, source), base)
    train, _ = data.split(table, base)
    print(
        f"demo search: {len(train)} training rows, space {base.model.search.space}, "
        f"{base.model.search.cv} folds, {args.threads} OpenMP thread(s) per fit, "
        f"{os.cpu_count()} cores"
    )

    def configured(kind: str, workers: int) -> Any:
        search = base.model.search.model_copy(
            update={
                "runner": base.model.search.runner.model_copy(
                    update={"kind": kind, "max_workers": workers}
                )
            }
        )
        return base.model_copy(update={"model": base.model.model_copy(update={"search": search})})

    @flow(name="search-runner-benchmark")
    def timed(config: Any) -> tuple[float, str]:
        start = time.perf_counter()
        result = train_model(train, config, args.threads)
        return time.perf_counter() - start, sha256_bytes(dump_model(result.pipeline))

    times: dict[str, list[float]] = {f"{k}:{n}": [] for k, n in runners}
    hashes: set[str] = set()
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        for repeat in range(args.repeat):
            for kind, workers in runners:
                seconds, digest = timed(configured(kind, workers))
                times[f"{kind}:{workers}"].append(seconds)
                hashes.add(digest)
                print(f"  repeat {repeat + 1} {kind}:{workers}: {seconds:.2f} s  {digest[:12]}")

    baseline = statistics.median(times[f"{runners[0][0]}:{runners[0][1]}"])
    print(
        f"\n{'runner':<12} {'median s':>9} {'ratio':>7}   (baseline {runners[0][0]}:"
        f"{runners[0][1]})"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<12} {median:>9.2f} {median / baseline:>7.2f}")
    print(f"model file SHA-256: {', '.join(sorted(hashes))}")
    if len(hashes) != 1:
        print("ERROR: the runners produced different model files", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
