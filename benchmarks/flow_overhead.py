"""What running the training pipeline as a Prefect flow costs, compared with a plain script.

The `training` flow's own body runs once with every task called as a plain function (no
engine, no server: `plain_pipeline`) and once as the Prefect `training` flow, each in its own
subprocess with its own fresh MODELCYCLE_HOME and PREFECT_HOME:

    .venv/bin/python benchmarks/flow_overhead.py                     # demo (3x) and 1M rows (1x)
    .venv/bin/python benchmarks/flow_overhead.py --sizes demo --skip-search
    .venv/bin/python benchmarks/flow_overhead.py --sizes 1m --rows 100000 --repeat 1
    .venv/bin/python benchmarks/flow_overhead.py --sizes demo --repeat 1 --profile

Per dataset it prints wall time, peak memory and the flow/plain ratio (median of the
repeats; the plain/flow order alternates between repeats). The ratio compares the pipeline
call only: `training(...)` against the plain function, both timed inside their process
after the imports, and for the flow after Prefect's temporary server answered its health
check. The whole subprocess (interpreter start, imports, server start, shutdown) is printed
beside it. A JSON file with every measurement goes to `benchmarks/results/`.

`--profile` adds one cProfile run of each variant per dataset (not counted in the timings)
and prints where the main thread's time goes, by package, and Prefect's costliest calls.
`--omp-threads 1` keeps OpenMP (HistGradientBoosting) steady on a busy machine; `--warmup`,
`--no-heartbeat` and `--flow-env KEY=VALUE` are experiments. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import os
import platform
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
DEMO_CONFIG = "configs/demo.yaml"
GOALS = {"demo": 1.3, "demo-nosearch": 1.3, "1m": 1.1}
DEFAULT_REPEAT = {"demo": 3, "demo-nosearch": 3, "1m": 1}
SYNTHETIC_SEED = 20_240_601
WORKER_TIMEOUT_S = 3600
ACTOR = "training-flow"

PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


# =============================================================================================
# Worker side: runs inside the measured subprocess.
# =============================================================================================


def _maxrss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StepTimer:
    """Seconds per step of the plain pipeline, named like the flow's tasks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def plain_pipeline(config_path: str, skip_search: bool, steps: StepTimer) -> dict[str, Any]:
    """`flows/training.py` (mode scratch) without Prefect's engine: the flow's own body runs, and
    every task call runs the task's function directly, timed under the task's name.

    Nothing is copied from the flow, so the two variants cannot drift apart. What the engine
    would add is left out: task calls make no task runs, the run logger is a standard-library
    logger, Prefect artifacts go nowhere (their markdown and rows are still built), and the
    search's candidates are scored one after another in this process (`training.search`, the
    path for callers without a task runner) instead of on the flow's task runner.
    """
    from flows.training import TrainingMode, training
    from modelcycle.config import TrainingOverrides

    overrides = TrainingOverrides(skip_search=True) if skip_search else None
    with without_engine(steps):
        return training.fn(
            config_path=config_path, mode=TrainingMode.scratch, overrides=overrides, actor=ACTOR
        )


@contextlib.contextmanager
def without_engine(steps: StepTimer) -> Iterator[None]:
    """Task calls as plain function calls, for the duration of one plain run."""
    from unittest import mock

    from prefect import Task

    from modelcycle import training
    from tasks import training as training_tasks

    def call(task: Task[Any, Any], *args: Any, **kwargs: Any) -> Any:
        with steps(task.name):
            return task.fn(*args, **kwargs)

    log = logging.getLogger("plain")
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(Task, "__call__", call))
        stack.enter_context(mock.patch.object(training_tasks, "run_search", training.search))
        stack.enter_context(
            mock.patch.dict(os.environ, {"PREFECT__FLOW_RUN_ID": str(uuid.uuid4())})
        )
        for module in [m for name, m in sys.modules.items() if name.startswith("tasks.")]:
            for name in vars(module).copy():
                if name == "get_run_logger":
                    stack.enter_context(mock.patch.object(module, name, lambda: log))
                elif name.startswith("create_") and name.endswith("_artifact"):
                    stack.enter_context(mock.patch.object(module, name, _nowhere))
        yield


def _nowhere(*args: Any, **kwargs: Any) -> None:
    """A Prefect artifact in the plain run: built by the task, sent nowhere."""


def _proc_status_kib(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process, from /proc (clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_ephemeral_server() -> Any:
    """Start Prefect's temporary server now, so the flow call below does not include it.

    `get_client()` inside the flow engine finds this same (per-process singleton) instance
    already running, exactly as a second flow run in the same process would.
    """
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    return server


def _heartbeats_off() -> Any:
    """An experiment, not the default: no heartbeat thread (the env var cannot go below 30 s).

    Its `join` at the end of the flow waits for the thread's current 1 s sleep to end.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _flow_run_records(flow_run_id: Any) -> dict[str, Any]:
    """Prefect's own view of the run: flow and task durations as the engine reported them."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
        )
    tasks: dict[str, float] = {}
    for run in task_runs:
        name = run.name.rsplit("-", 1)[0]  # "load-data-1a2" -> "load-data"
        if run.start_time and run.end_time:
            seconds = (run.end_time - run.start_time).total_seconds()
            tasks[name] = tasks.get(name, 0.0) + seconds
    flow_seconds = None
    if flow_run.start_time and flow_run.end_time:
        flow_seconds = (flow_run.end_time - flow_run.start_time).total_seconds()
    return {"engine_flow_seconds": flow_seconds, "engine_task_seconds": tasks}


def run_worker(args: argparse.Namespace) -> None:
    """One measured variant; writes its numbers as JSON to `args.result`."""
    imports_start = time.perf_counter()
    record: dict[str, Any] = {"variant": args.worker}
    if args.worker == "flow":
        from flows.training import TrainingMode, training
        from modelcycle.config import TrainingOverrides
    else:
        # The same modules as the flow variant: the plain run executes the flow's own body.
        import flows.training  # noqa: F401

        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s",
            datefmt="%H:%M:%S",
        )
    record["import_seconds"] = time.perf_counter() - imports_start
    record["maxrss_after_imports_mb"] = _maxrss_mb()

    server = None
    if args.worker == "flow":
        server_start = time.perf_counter()
        server = _start_ephemeral_server()
        record["server_start_seconds"] = time.perf_counter() - server_start
    server_pid = server.server_process.pid if server and server.server_process else None
    server_cpu_before = _proc_cpu_seconds(server_pid) if server_pid else None

    def run_pipeline(steps: StepTimer) -> tuple[dict[str, Any], Any]:
        if args.worker == "plain":
            return plain_pipeline(args.config, args.skip_search, steps), None
        overrides = TrainingOverrides(skip_search=True) if args.skip_search else None
        with _heartbeats_off() if args.no_heartbeat else contextlib.nullcontext():
            state = training(
                config_path=args.config,
                mode=TrainingMode.scratch,
                overrides=overrides,
                actor=ACTOR,
                return_state=True,
            )
        return state.result(), state

    if args.warmup_home:
        # A first, untimed run into another home: what a long-lived process pays per run.
        measured_home = os.environ["MODELCYCLE_HOME"]
        os.environ["MODELCYCLE_HOME"] = args.warmup_home
        warm_start = time.perf_counter()
        run_pipeline(StepTimer())
        record["warmup_seconds"] = time.perf_counter() - warm_start
        os.environ["MODELCYCLE_HOME"] = measured_home

    profiler = cProfile.Profile() if args.profile_out else None
    steps = StepTimer()
    cpu_before = _cpu_seconds()
    if profiler:
        profiler.enable()
    start = time.perf_counter()
    outcome, state = run_pipeline(steps)
    record["pipeline_seconds"] = time.perf_counter() - start
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile_out)
    record["pipeline_cpu_seconds"] = _cpu_seconds() - cpu_before
    record["maxrss_mb"] = _maxrss_mb()
    hwm = _proc_status_kib(os.getpid(), "VmHWM")  # this address space only: a cross-check
    record["vmhwm_mb"] = hwm / 1024 if hwm is not None else None
    record["outcome"] = {k: outcome[k] for k in ("model", "version", "status", "gate", "metrics")}
    record["step_seconds"] = steps.seconds

    if server_pid:
        after = _proc_cpu_seconds(server_pid)
        if after is not None and server_cpu_before is not None:
            record["server_cpu_seconds_during_pipeline"] = after - server_cpu_before
        post_start = time.perf_counter()
        record.update(_flow_run_records(state.state_details.flow_run_id))
        record["post_query_seconds"] = time.perf_counter() - post_start
        hwm = _proc_status_kib(server_pid, "VmHWM")
        record["server_peak_rss_mb"] = hwm / 1024 if hwm is not None else None
    record["loadavg_end"] = os.getloadavg()
    Path(args.result).write_text(json.dumps(record, indent=2, default=str))


# =============================================================================================
# Driver side: prepares the data, starts the workers, reports.
# =============================================================================================


def make_synthetic(rows: int, folder: Path) -> Path:
    """A 1M-row binary task with real signal: 8 numeric, 4 categorical, a time column.

    Written as Parquet with a config YAML beside it (source is relative to the config).
    """
    import numpy as np
    import pandas as pd
    import yaml

    rng = np.random.default_rng(SYNTHETIC_SEED)
    year = rng.integers(2005, 2025, rows)
    x = {
        "x0": rng.normal(0.0, 1.0, rows),
        "x1": rng.normal(50.0, 10.0, rows),
        "x2": rng.lognormal(3.0, 0.5, rows),
        "x3": rng.uniform(0.0, 1.0, rows),
        "x4": rng.normal(0.0, 2.0, rows),
        "x5": rng.exponential(1.0, rows),
        "x6": rng.integers(0, 10, rows).astype("float64"),
        "x7": rng.normal(0.0, 1.0, rows),  # noise
    }
    levels = {
        "region": [f"region-{i:02d}" for i in range(8)],
        "channel": ["web", "store", "phone", "partner", "other"],
        "product": [f"product-{i:02d}" for i in range(12)],
        "plan": [f"plan-{chr(ord('a') + i)}" for i in range(25)],
    }
    codes = {
        "region": rng.integers(0, 8, rows),
        "channel": rng.choice(5, rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
        "product": rng.integers(0, 12, rows),
        "plan": rng.integers(0, 25, rows),
    }
    effects = {name: rng.normal(0.0, 0.6, len(values)) for name, values in levels.items()}
    logit = (
        0.9 * x["x0"]
        - 0.04 * (x["x1"] - 50.0)
        + 0.6 * np.log(x["x2"]) * x["x3"]
        + np.sin(x["x4"])
        - 0.3 * x["x5"]
        + 0.05 * (x["x6"] - 4.5)
        + 0.02 * (year - 2015)
        - 1.2
    )
    for name in levels:
        logit += effects[name][codes[name]]
    target = (rng.uniform(0.0, 1.0, rows) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    table = pd.DataFrame({"customer_id": np.arange(rows, dtype="int64"), "year": year})
    for name, values in x.items():
        values = values.copy()
        if name in ("x1", "x5"):
            values[rng.uniform(0.0, 1.0, rows) < 0.01] = np.nan
        table[name] = values
    for name, values in levels.items():
        column = pd.Series(np.asarray(values, dtype=object)[codes[name]])
        if name == "product":
            column[rng.uniform(0.0, 1.0, rows) < 0.01] = None
        table[name] = column
    table["segment"] = np.where(rng.uniform(0.0, 1.0, rows) < 0.3, "small", "large")
    table["converted"] = target
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / "synthetic.parquet"
    table.to_parquet(data_path, index=False)

    config = {
        "name": "synthetic-1m",
        "owner": "benchmarks@example.org",
        "description": f"Synthetic binary task, {rows} rows, seed {SYNTHETIC_SEED}.",
        "intended_use": "Benchmarking modelcycle's flow overhead.",
        "task": "binary_classification",
        "data": {"source": data_path.name},
        "target": "converted",
        "features": {
            "numeric": list(x),
            "categorical": list(levels),
        },
        "time_column": "year",
        "sensitive_columns": ["segment"],
        "pii_columns": ["customer_id"],
        "columns": {
            "year": {"type": "integer", "min": 2000, "max": 2030},
            "converted": {"type": "integer", "min": 0, "max": 1},
            "x1": {"type": "numeric", "max_missing_share": 0.05},
            "x2": {"type": "numeric", "min": 0},
            "x5": {"type": "numeric", "min": 0, "max_missing_share": 0.05},
            "x6": {"type": "numeric", "min": 0, "max": 9},
            "channel": {"type": "categorical", "allowed": levels["channel"]},
            "region": {"type": "categorical", "allowed": levels["region"]},
            "product": {"type": "categorical", "max_missing_share": 0.05},
            "segment": {"type": "categorical", "allowed": ["small", "large"]},
        },
        "cleaning": {"drop_duplicates": True, "invalid_values": "set_missing"},
        "split": {"strategy": "time", "test_share": 0.2, "seed": 42},
        "model": {
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {
                "max_iter": 50,
                "learning_rate": 0.1,
                "early_stopping": False,
                "random_state": 42,
            },
        },
        "evaluation": {
            "primary_metric": "roc_auc",
            "extra_metrics": ["accuracy", "average_precision", "f1", "log_loss", "brier"],
            "slices": ["segment", "channel"],
            "positive_class": 1,
        },
        "gate": {"floors": {"roc_auc": 0.6}},
    }
    config_path = folder / "synthetic.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path


def prepare_demo_file(folder: Path) -> Path:
    """The prepared GSS table, built once and copied into every fresh MODELCYCLE_HOME."""
    from modelcycle.data import ensure_demo_file

    return ensure_demo_file(folder)


def _cli_process_defaults() -> dict[str, str]:
    """What `modelcycle.runtime` sets before the CLI runs a flow (e.g. OMP_WAIT_POLICY)."""
    from modelcycle.cli import _runtime as runtime

    defaults = getattr(runtime, "PROCESS_DEFAULTS", None)
    return dict(defaults if defaults is not None else getattr(runtime, "OFFLINE_DEFAULTS", {}))


def _worker_env(home: Path, prefect_home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The CLI's process defaults for both variants, fresh homes, no inherited Prefect state."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("PREFECT_", "MODELCYCLE_")):
            del env[key]  # unsets PREFECT_API_URL and anything else inherited
    for key, value in _cli_process_defaults().items():
        env.setdefault(key, value)
    env.update(PREFECT_ENV)
    for key, value in extra.items():
        if value == "":
            env.pop(key, None)  # "" means: leave it to the library's default
    env["PREFECT_HOME"] = str(prefect_home)
    env["MODELCYCLE_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update({key: value for key, value in extra.items() if value != ""})
    return env


def run_variant(
    variant: str,
    dataset: dict[str, Any],
    workdir: Path,
    tag: str,
    options: dict[str, Any],
    profile_out: Path | None = None,
) -> dict[str, Any]:
    """One subprocess, fresh homes; returns the worker's record plus the total wall time."""
    home = workdir / f"home-{tag}"
    prefect_home = workdir / f"prefect-{tag}"
    prefect_home.mkdir(parents=True)
    homes = [home]
    if options["warmup"]:
        homes.append(workdir / f"home-{tag}-warmup")
    if dataset["demo_file"] is not None:
        for folder in homes:
            (folder / "data").mkdir(parents=True)
            shutil.copy2(dataset["demo_file"], folder / "data" / dataset["demo_file"].name)
    result_path = workdir / f"result-{tag}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        variant,
        "--config",
        dataset["config"],
        "--result",
        str(result_path),
    ]
    if dataset["skip_search"]:
        command.append("--skip-search")
    if options["warmup"]:
        command += ["--warmup-home", str(homes[-1])]
    env = dict(options["env"])
    if variant == "flow":
        env.update(options["flow_env"])
        if options["no_heartbeat"]:
            command.append("--no-heartbeat")
    if profile_out is not None:
        command += ["--profile-out", str(profile_out)]
    log_path = workdir / f"log-{tag}.txt"
    loadavg = os.getloadavg()
    start = time.perf_counter()
    with log_path.open("w") as log:
        completed = subprocess.run(
            command,
            cwd=REPO,
            env=_worker_env(home, prefect_home, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
    wall = time.perf_counter() - start
    if completed.returncode != 0 or not result_path.is_file():
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{variant} worker failed ({completed.returncode}); log tail:\n{tail}")
    record = json.loads(result_path.read_text())
    record.update({"process_wall_seconds": wall, "loadavg_start": loadavg, "tag": tag})
    return record


def _median(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(name: str, plain: list[dict[str, Any]], flow: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"dataset": name, "repeats": len(plain), "goal": GOALS[name]}
    for variant, records in (("plain", plain), ("flow", flow)):
        summary[variant] = {
            key: _median(records, key)
            for key in (
                "pipeline_seconds",
                "process_wall_seconds",
                "maxrss_mb",
                "maxrss_after_imports_mb",
                "vmhwm_mb",
                "import_seconds",
                "pipeline_cpu_seconds",
                "server_start_seconds",
                "server_peak_rss_mb",
                "server_cpu_seconds_during_pipeline",
                "engine_flow_seconds",
            )
        }
    plain_s = summary["plain"]["pipeline_seconds"]
    flow_s = summary["flow"]["pipeline_seconds"]
    summary["ratio_pipeline"] = flow_s / plain_s
    summary["ratio_process_wall"] = (
        summary["flow"]["process_wall_seconds"] / summary["plain"]["process_wall_seconds"]
    )
    summary["ratio_peak_rss"] = summary["flow"]["maxrss_mb"] / summary["plain"]["maxrss_mb"]
    # CPU: the flow process plus its temporary server, against the plain process.
    summary["ratio_cpu"] = (
        summary["flow"]["pipeline_cpu_seconds"]
        + (summary["flow"]["server_cpu_seconds_during_pipeline"] or 0.0)
    ) / summary["plain"]["pipeline_cpu_seconds"]
    summary["meets_goal"] = summary["ratio_pipeline"] <= GOALS[name]
    # Per-step medians: the plain step timers against Prefect's task run durations.
    step_names = list(plain[0]["step_seconds"])
    summary["steps"] = {
        step: {
            "plain": statistics.median(r["step_seconds"].get(step, 0.0) for r in plain),
            "flow_task": statistics.median(
                r.get("engine_task_seconds", {}).get(step, 0.0) for r in flow
            ),
        }
        for step in step_names
    }
    summary["pipeline_seconds_each"] = {
        "plain": [round(r["pipeline_seconds"], 3) for r in plain],
        "flow": [round(r["pipeline_seconds"], 3) for r in flow],
    }
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(summaries: list[dict[str, Any]]) -> None:
    columns = [
        ("pipeline s", "pipeline_seconds", ".2f"),
        ("CPU s", "pipeline_cpu_seconds", ".1f"),
        ("server CPU s", "server_cpu_seconds_during_pipeline", ".1f"),
        ("process s", "process_wall_seconds", ".1f"),
        ("peak RSS MB", "maxrss_mb", ".0f"),
        ("after imports", "maxrss_after_imports_mb", ".0f"),
        ("server start s", "server_start_seconds", ".1f"),
        ("server RSS MB", "server_peak_rss_mb", ".0f"),
    ]
    header = f"{'dataset':<14}{'variant':<8}" + "".join(f"{c[0]:>15}" for c in columns)
    print(header)
    print("-" * len(header))
    for s in summaries:
        for variant in ("plain", "flow"):
            v = s[variant]
            cells = "".join(f"{_fmt(v[key], spec):>15}" for _, key, spec in columns)
            print(f"{s['dataset']:<14}{variant:<8}{cells}")
            if v["vmhwm_mb"] and abs(v["maxrss_mb"] - v["vmhwm_mb"]) > 0.05 * v["vmhwm_mb"]:
                print(f"  (ru_maxrss and VmHWM disagree: VmHWM {v['vmhwm_mb']:.0f} MB)")
        ratios = {
            "pipeline_seconds": s["ratio_pipeline"],
            "pipeline_cpu_seconds": s["ratio_cpu"],
            "process_wall_seconds": s["ratio_process_wall"],
            "maxrss_mb": s["ratio_peak_rss"],
        }
        cells = "".join(f"{_fmt(ratios.get(key), '.3f'):>15}" for _, key, _ in columns)
        print(f"{s['dataset']:<14}{'flow/pl':<8}{cells}")
        verdict = "meets" if s["meets_goal"] else "MISSES"
        each = ", ".join(
            f"{p:.2f}/{f:.2f}"
            for p, f in zip(
                s["pipeline_seconds_each"]["plain"], s["pipeline_seconds_each"]["flow"], strict=True
            )
        )
        print(
            f"  -> flow/plain pipeline time {s['ratio_pipeline']:.3f} (median of {s['repeats']}; "
            f"goal <= {s['goal']}: {verdict}); runs plain/flow s: {each}"
        )
        print()


def print_steps(summaries: list[dict[str, Any]]) -> None:
    for s in summaries:
        print(f"{s['dataset']}: per step, plain timer vs Prefect task run duration (median s)")
        for step, t in s["steps"].items():
            print(f"  {step:<24}{t['plain']:>9.3f}{t['flow_task']:>9.3f}")
        plain_sum = sum(t["plain"] for t in s["steps"].values())
        flow_sum = sum(t["flow_task"] for t in s["steps"].values())
        flow = s["flow"]
        print(f"  {'sum of steps':<24}{plain_sum:>9.3f}{flow_sum:>9.3f}")
        print(
            f"  flow call {flow['pipeline_seconds']:.3f} s, engine-reported flow run "
            f"{flow['engine_flow_seconds'] or float('nan'):.3f} s, outside the tasks "
            f"{flow['pipeline_seconds'] - flow_sum:.3f} s; server CPU during the flow "
            f"{flow['server_cpu_seconds_during_pipeline'] or 0:.2f} s"
        )
        print()


# -- profiles ----------------------------------------------------------------------------------

_SITE = re.compile(r"site-packages/([^/]+)")
# Prefect's engine entry points that contain the task and flow bodies themselves.
_USER_CODE_ENTRIES = {"call_task_fn", "call_flow_fn"}
_PASS_THROUGH = {"builtins", "stdlib"}


def _bucket(filename: str) -> str:
    if filename.startswith("~") or filename == "":
        return "builtins"
    match = _SITE.search(filename)
    if match:
        name = match.group(1).split(".")[0]
        return {
            "sklearn": "scikit-learn",
            "httpx": "httpx/httpcore",
            "httpcore": "httpx/httpcore",
        }.get(name, name)
    if str(REPO) in filename:
        return filename.removeprefix(str(REPO) + "/").split("/")[0]
    return "stdlib"


def _owners(raw: dict[Any, Any]) -> dict[Any, dict[str, float]]:
    """Per function, the packages its own time is charged to.

    Library code is charged to its package. Built-in (C) and standard-library functions are
    charged to their nearest library caller, split by the callers' cumulative time, so a lock
    wait inside `threading` or a `socket.recv` counts for whoever waited (Prefect, httpx, ...).
    """
    memo: dict[Any, dict[str, float]] = {}

    def owners(func: Any, visiting: frozenset[Any]) -> dict[str, float]:
        if func in memo:
            return memo[func]
        own = _bucket(func[0])
        if own not in _PASS_THROUGH:
            result = {own: 1.0}
        else:
            callers = {c: v for c, v in raw[func][4].items() if c not in visiting and c in raw}
            total = sum(v[3] for v in callers.values())
            if not callers or total <= 0:
                result = {own: 1.0}
            else:
                result = {}
                for caller, v in callers.items():
                    weight = v[3] / total
                    for name, share in owners(caller, visiting | {func}).items():
                        result[name] = result.get(name, 0.0) + weight * share
        if not visiting:
            memo[func] = result
        return result

    return {func: owners(func, frozenset()) for func in raw}


def _ancestors(raw: dict[Any, Any], targets: set[Any]) -> set[Any]:
    seen = set(targets)
    stack = list(targets)
    while stack:
        for caller in raw[stack.pop()][4]:
            if caller in raw and caller not in seen:
                seen.add(caller)
                stack.append(caller)
    return seen


def analyse_profile(path: Path) -> dict[str, Any]:
    """Main-thread time by package, and for a flow the engine's own cost outside the tasks."""
    raw: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    owners = _owners(raw)
    buckets: dict[str, float] = {}
    for func, (_cc, _nc, tottime, _ct, _callers) in raw.items():
        for name, share in owners[func].items():
            buckets[name] = buckets.get(name, 0.0) + tottime * share
    total = sum(buckets.values())
    entries = {f for f in raw if f[2] in _USER_CODE_ENTRIES and "/prefect/" in f[0]}
    result: dict[str, Any] = {"total_seconds": total, "buckets": buckets}
    if entries:
        task_bodies = sum(raw[f][3] for f in entries if f[2] == "call_task_fn")
        flow_body = sum(raw[f][3] for f in entries if f[2] == "call_flow_fn")
        wrappers = _ancestors(raw, entries)
        # Prefect functions that do not contain user code: the engine's own work, ranked by
        # cumulative time (so nested calls appear under their parents too).
        own = [
            (f"{f[0].split('site-packages/')[-1]}:{f[1]}({f[2]})", v[3], v[1])
            for f, v in raw.items()
            if f not in wrappers and _bucket(f[0]) == "prefect"
        ]
        own.sort(key=lambda item: -item[1])
        http = [v for f, v in raw.items() if f[0].endswith("httpx/_client.py") and f[2] == "send"]
        result.update(
            {
                "http_requests": sum(v[1] for v in http),
                "http_seconds": sum(v[3] for v in http),
                "task_bodies_seconds": task_bodies,
                "flow_body_outside_tasks_seconds": flow_body - task_bodies,
                "engine_outside_flow_body_seconds": total - flow_body,
                "prefect_top": own[:25],
            }
        )
    return result


def print_profile(name: str, variant: str, path: Path) -> dict[str, Any]:
    analysis = analyse_profile(path)
    total = analysis["total_seconds"]
    print(f"{name} / {variant}: main-thread cProfile {total:.2f} s ({path.name})")
    ranked = sorted(analysis["buckets"].items(), key=lambda item: -item[1])
    for owner, seconds in ranked[:10]:
        print(f"  {owner:<22}{seconds:>8.2f} s {seconds / total:>6.1%}")
    if "prefect_top" in analysis:
        print(
            f"  task bodies {analysis['task_bodies_seconds']:.2f} s; flow body outside tasks "
            f"(incl. task engine) {analysis['flow_body_outside_tasks_seconds']:.2f} s; "
            f"flow engine before/after the body "
            f"{analysis['engine_outside_flow_body_seconds']:.2f} s"
        )
        print(
            f"  HTTP requests to the Prefect API from the main thread: "
            f"{analysis['http_requests']}, {analysis['http_seconds']:.2f} s"
        )
        print("  Prefect calls that contain no user code (cumulative s, calls):")
        for label, cumulative, calls in analysis["prefect_top"][:15]:
            print(f"    {cumulative:>7.3f} {calls:>6}  {label}")
    print()
    return analysis


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="demo,1m", help="Comma list of: demo, demo-nosearch, 1m."
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the '1m' table.")
    parser.add_argument(
        "--repeat", type=int, default=None, help="Repeats per dataset (default: demo 3, 1m 1)."
    )
    parser.add_argument(
        "--skip-search",
        action="store_true",
        help="Also run the demo without its hyperparameter search (dataset demo-nosearch).",
    )
    parser.add_argument(
        "--profile", action="store_true", help="One extra cProfile run per variant and dataset."
    )
    parser.add_argument(
        "--omp-threads",
        type=int,
        default=None,
        help="Set OMP_NUM_THREADS in both workers (default: unset, the libraries decide).",
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=["default", "active", "passive"],
        default=None,
        help="OMP_WAIT_POLICY in both workers (default: what modelcycle.runtime sets for the "
        "CLI; 'default' removes it, leaving libgomp's spin-then-sleep).",
    )
    parser.add_argument(
        "--flow-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Extra environment for the flow worker only, to try a Prefect setting "
        "(e.g. PREFECT_LOGGING_TO_API_ENABLED=false). Repeatable.",
    )
    parser.add_argument(
        "--no-heartbeat",
        action="store_true",
        help="Experiment: run the flow with Prefect's flow-run heartbeats off.",
    )
    parser.add_argument(
        "--warmup",
        action="store_true",
        help="Run the pipeline once, untimed, in each worker first (into another fresh home): "
        "the per-run cost in a long-lived process, without first-call and cold-server costs.",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-temp", action="store_true", help="Keep homes, logs and data.")
    # Worker mode (internal).
    parser.add_argument("--worker", choices=["plain", "flow"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", choices=["demo", "synthetic"], help=argparse.SUPPRESS)
    parser.add_argument("--warmup-home", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _prepare_in_subprocess(arguments: list[str]) -> str:
    """Build data in a child process, so this driver stays small.

    Linux carries a process's peak RSS across execve (the old address space's high-water mark
    goes into `ru_maxrss`), so a worker started from a driver that once held a 1M-row table
    would report that table's memory as its own peak.
    """
    command = [sys.executable, str(Path(__file__).resolve()), *arguments]
    completed = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=False, timeout=WORKER_TIMEOUT_S
    )
    if completed.returncode != 0:
        raise RuntimeError(f"data preparation failed:\n{completed.stderr[-4000:]}")
    return completed.stdout.strip().splitlines()[-1]


def _datasets(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = sorted(set(sizes) - {"demo", "demo-nosearch", "1m"})
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; use demo, demo-nosearch and/or 1m")
    datasets = []
    if "demo" in sizes or "demo-nosearch" in sizes:
        demo_file = Path(_prepare_in_subprocess(["--prepare", "demo", "--out", str(workdir)]))
        base = {"config": DEMO_CONFIG, "demo_file": demo_file, "rows": None}
        if "demo" in sizes:
            datasets.append({**base, "name": "demo", "skip_search": False})
        if "demo-nosearch" in sizes or ("demo" in sizes and args.skip_search):
            datasets.append({**base, "name": "demo-nosearch", "skip_search": True})
    if "1m" in sizes:
        started = time.perf_counter()
        prepare = ["--prepare", "synthetic", "--out", str(workdir), "--rows", str(args.rows)]
        config = _prepare_in_subprocess(prepare)
        print(f"generated {args.rows} rows in {time.perf_counter() - started:.1f} s: {config}")
        datasets.append(
            {
                "name": "1m",
                "config": str(config),
                "demo_file": None,
                "rows": args.rows,
                "skip_search": False,
            }
        )
    return datasets


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    if args.prepare == "demo":
        print(prepare_demo_file(Path(args.out) / "demo-data"))
        return
    if args.prepare == "synthetic":
        print(make_synthetic(args.rows, Path(args.out) / "synthetic"))
        return

    started_at = datetime.now(UTC)
    loadavg_start = os.getloadavg()
    print(
        f"load average at start: {loadavg_start[0]:.2f} {loadavg_start[1]:.2f} "
        f"{loadavg_start[2]:.2f} on {os.cpu_count()} CPUs"
    )
    if loadavg_start[0] > 0.5 * (os.cpu_count() or 1):
        print(
            "note: the machine is busy. HistGradientBoosting's OpenMP threads slow down "
            "badly when they must share cores; --omp-threads 1 makes the comparison steadier."
        )
    both_env: dict[str, str] = {}
    if args.omp_threads is not None:
        both_env["OMP_NUM_THREADS"] = str(args.omp_threads)
    if args.omp_wait_policy is not None:
        policy = args.omp_wait_policy
        both_env["OMP_WAIT_POLICY"] = "" if policy == "default" else policy.upper()
    options: dict[str, Any] = {
        "env": both_env,
        "flow_env": dict(item.split("=", 1) for item in args.flow_env),
        "no_heartbeat": args.no_heartbeat,
        "warmup": args.warmup,
    }
    if any(options.values()):
        print(f"worker options: {options}")
    workdir = Path(tempfile.mkdtemp(prefix="modelcycle-bench-"))
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_at": started_at.isoformat(),
        "host": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "loadavg_start": loadavg_start,
        "worker_options": options,
        "worker_process_defaults": _cli_process_defaults(),
        "datasets": [],
    }
    try:
        datasets = _datasets(args, workdir)
        summaries = []
        for dataset in datasets:
            name = dataset["name"]
            repeat = args.repeat or DEFAULT_REPEAT[name]
            plain: list[dict[str, Any]] = []
            flow: list[dict[str, Any]] = []
            for i in range(repeat):
                order = ("plain", "flow") if i % 2 == 0 else ("flow", "plain")
                for variant in order:
                    record = run_variant(
                        variant, dataset, workdir, f"{name}-{variant}-{i}", options
                    )
                    (plain if variant == "plain" else flow).append(record)
                    print(
                        f"{name} #{i + 1}/{repeat} {variant:<5}: pipeline "
                        f"{record['pipeline_seconds']:.2f} s, process "
                        f"{record['process_wall_seconds']:.2f} s, peak RSS "
                        f"{record['maxrss_mb']:.0f} MB, {record['outcome']['status']} "
                        f"roc_auc {record['outcome']['metrics'].get('roc_auc', float('nan')):.4f}, "
                        f"load {record['loadavg_start'][0]:.2f}",
                        flush=True,
                    )
            summary = summarise(name, plain, flow)
            summary["rows"] = dataset["rows"]
            summary["runs"] = {"plain": plain, "flow": flow}
            if args.profile:
                profiles = {}
                for variant in ("plain", "flow"):
                    args.results_dir.mkdir(parents=True, exist_ok=True)
                    stamp = started_at.strftime("%Y%m%d-%H%M%S")
                    prof = args.results_dir / f"flow_overhead-{stamp}-{name}-{variant}.prof"
                    run_variant(
                        variant, dataset, workdir, f"{name}-{variant}-profile", options, prof
                    )
                    profiles[variant] = str(prof)
                summary["profiles"] = profiles
            summaries.append(summary)
        loadavg_end = os.getloadavg()
        print()
        print_table(summaries)
        print_steps(summaries)
        for s in summaries:
            for variant, path in s.get("profiles", {}).items():
                s.setdefault("profile_summary", {})[variant] = print_profile(
                    s["dataset"], variant, Path(path)
                )
        print(
            f"load average: start {loadavg_start[0]:.2f}, end {loadavg_end[0]:.2f} (1 min) "
            f"on {os.cpu_count()} CPUs; other work on the machine inflates both variants"
        )
        report["loadavg_end"] = loadavg_end
        report["datasets"] = summaries
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out = args.results_dir / f"flow_overhead-{started_at.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=2, default=str))
        print(f"results: {out}")
    finally:
        if args.keep_temp:
            print(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
