"""The demo champion served by modelcycle and by the servers users would pick instead.

    .venv/bin/python benchmarks/serving.py                          # everything, ~20 min here
    .venv/bin/python benchmarks/serving.py --seconds 5 --systems modelcycle-2,fastapi-1
    .venv/bin/python benchmarks/serving.py --home .modelcycle       # the demo's champion

One champion (`gss-income` trained with configs/demo.yaml in a temporary MODELCYCLE_HOME, or
the champion of `--home`) is served at the same time by every system: modelcycle (durable
prediction log on, a bearer token), a plain FastAPI app written as users write one (a pydantic
body, `predict_proba` on a one-row DataFrame; 1 and 2 uvicorn workers), and, when their
virtual environments exist under /work/anchors (`--anchors`), `mlflow models serve
--env-manager local` and BentoML with adaptive batching. `wrk` drives closed-loop load:
single-row requests at concurrency 1, 8 and 32 and 100-row requests at concurrency 8, each
after a warm-up, systems interleaved (their order rotates from one load point to the next).
Rows come from the survey years the model never saw (2008-2018), missing values included.

Prints requests/s, rows/s, p50/p90/p99, errors and the servers' CPU per request for every
point; the goals as ratios against the anchors measured in the same run; and for modelcycle
the prediction log's record count against the rows it answered. JSON with every figure goes
to benchmarks/results/ (git-ignored). See benchmarks/README.md for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
ANCHOR_APPS = REPO / "benchmarks" / "serving_anchors"
RESULTS_DIR = REPO / "benchmarks" / "results"
WRK_SCRIPT = ANCHOR_APPS / "post.lua"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
MODEL = "gss-income"
UNSEEN_FROM_YEAR = 2008
SINGLE_BODIES = 2000
BATCH_BODIES = 200
BATCH_ROWS = 100
STARTUP_TIMEOUT_S = 180
WRK_TIMEOUT = "10s"  # a slow answer is latency, not an error, up to this
DEFAULT_SYSTEMS = (
    "modelcycle-2",
    "fastapi-1",
    "fastapi-2",
    "mlflow-1",
    "mlflow-2",
    "bentoml-1",
    "bentoml-2",
)
OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# A quiet environment for every server: no inherited OpenMP or Prefect settings. modelcycle caps
# its own native threads; the anchors get OMP_NUM_THREADS from --anchor-threads (1 by default:
# uncapped, one row through the pipeline took 376 ms p50 instead of 31 ms at load 14, which
# would make them strawmen; 0 runs them as their docs do, with no cap).
DROPPED_ENV_PREFIXES = ("PREFECT_", "MODELCYCLE_", "OMP_", "OPENBLAS_", "MKL_", "BENCH_")


@dataclass(frozen=True)
class LoadPoint:
    """One measured load: `connections` closed-loop clients sending bodies of `rows` rows."""

    name: str
    connections: int
    rows: int


POINTS = {
    "c1": LoadPoint("1 row, c=1", 1, 1),
    "c8": LoadPoint("1 row, c=8", 8, 1),
    "c32": LoadPoint("1 row, c=32", 32, 1),
    "batch100": LoadPoint("100 rows, c=8", 8, BATCH_ROWS),
}


@dataclass(frozen=True)
class Champion:
    """The served model: the registry's record of it, and the state folder it lives in."""

    home: Path
    version: int
    model_file: Path
    sha256: str
    features: tuple[str, ...]


# =============================================================================================
# Systems under test
# =============================================================================================


@dataclass
class System:
    """One server: how to start it, where to send one row and many, how a body is shaped."""

    name: str
    command: list[str]
    env: dict[str, str]
    single_path: str
    batch_path: str
    single_body: Callable[[dict[str, Any]], Any]
    batch_body: Callable[[list[dict[str, Any]]], Any]
    cwd: Path = REPO
    auth: str | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    cold_start_s: float | None = None
    # Rows answered with a 2xx as the clients counted them, over every request ever sent
    # (probes and warm-ups too), and how many rows were in flight when a wrk run stopped: the
    # server may have answered (and logged) those after wrk stopped reading.
    acknowledged_rows: int = 0
    unread_rows_bound: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def body(self, rows: list[dict[str, Any]]) -> Any:
        return self.single_body(rows[0]) if len(rows) == 1 else self.batch_body(rows)

    def path(self, rows: int) -> str:
        return self.single_path if rows == 1 else self.batch_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV_PREFIXES)}
    return {**env, **OFFLINE, **extra}


def _anchor_env(champion: Champion, threads: int, **extra: str) -> dict[str, str]:
    capped = {"OMP_NUM_THREADS": str(threads)} if threads > 0 else {}
    model = {"BENCH_MODEL": str(champion.model_file), "BENCH_MODEL_SHA256": champion.sha256}
    return _clean_env(**model, **capped, **extra)


def modelcycle_system(
    champion: Champion, workers: int, token: str, scratch: Path, compiled: bool = True
) -> System:
    """`modelcycle serve` with its defaults (strict durability), its own log folder per run.

    `modelcycle-N` answers with the champion's compiled form when it has one (the default);
    `modelcycle-pipeline-N` with its pipeline (MODELCYCLE_SERVE_COMPILED=false)."""
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    name = f"modelcycle-{workers}" if compiled else f"modelcycle-pipeline-{workers}"
    log_root = scratch / f"predictions-{name}"
    env = _clean_env(
        MODELCYCLE_HOME=str(champion.home),
        MODELCYCLE_SERVE_TOKENS=token,
        MODELCYCLE_SERVE_LOG_ROOT=str(log_root),
        MODELCYCLE_SERVE_COMPILED=str(compiled).lower(),
        PYTHONPATH=str(REPO),
    )
    return System(
        name=name,
        command=[
            str(bin_dir / "modelcycle"),
            "serve",
            "--model",
            MODEL,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        single_path=f"/v1/models/{MODEL}/predict",
        batch_path=f"/v1/models/{MODEL}/predict",
        single_body=lambda row: {"rows": [row]},
        batch_body=lambda rows: {"rows": rows},
        auth=f"Bearer {token}",
        port=port,
        extra={"log_root": str(log_root)},
    )


def fastapi_system(champion: Champion, workers: int, threads: int) -> System:
    port = _free_port()
    return System(
        name=f"fastapi-{workers}",
        command=[
            str(Path(sys.executable).parent / "uvicorn"),
            "fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=_anchor_env(champion, threads),
        cwd=ANCHOR_APPS,
        single_path="/predict",
        batch_path="/predict_batch",
        single_body=lambda row: row,
        batch_body=lambda rows: {"rows": rows},
        port=port,
    )


def mlflow_system(
    champion: Champion,
    workers: int,
    threads: int,
    venv: Path,
    scratch: Path,
    rows: list[dict[str, Any]],
) -> System:
    """`mlflow models serve --env-manager local` on a model folder saved by mlflow itself."""
    model_dir = scratch / "mlflow-model"
    if not model_dir.exists():
        sample = scratch / "mlflow-sample.json"
        sample.write_text(json.dumps(rows[:1000]))
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                str(ANCHOR_APPS / "mlflow_export.py"),
                str(champion.model_file),
                champion.sha256,
                str(sample),
                str(model_dir),
            ],
            env=_clean_env(),
            check=True,
            capture_output=True,
        )
    port = _free_port()
    return System(
        name=f"mlflow-{workers}",
        command=[
            str(venv / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        # mlflow's server finds its own executables on PATH.
        env=_anchor_env(champion, threads, PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}"),
        single_path="/invocations",
        batch_path="/invocations",
        single_body=lambda row: {"dataframe_records": [row]},
        batch_body=lambda rows: {"dataframe_records": rows},
        port=port,
    )


def bentoml_system(champion: Champion, workers: int, threads: int, venv: Path) -> System:
    port = _free_port()
    return System(
        name=f"bentoml-{workers}",
        command=[
            str(venv / "bin" / "bentoml"),
            "serve",
            "bentoml_service:GssIncome",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=_anchor_env(
            champion,
            threads,
            BENCH_WORKERS=str(workers),
            BENTOML_HOME=str(champion.home.parent / "bentoml-home"),
            PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        ),
        cwd=ANCHOR_APPS,
        single_path="/predict",
        batch_path="/predict",
        single_body=lambda row: {"rows": [row]},
        batch_body=lambda rows: {"rows": rows},
        port=port,
    )


def build_systems(
    args: argparse.Namespace,
    champion: Champion,
    scratch: Path,
    token: str,
    rows: list[dict[str, Any]],
) -> list[System]:
    names, anchors, threads = args.systems, args.anchors, args.anchor_threads
    systems = []
    for name in names:
        kind, _, count = name.rpartition("-")
        if not kind or not count.isdigit() or int(count) < 1:
            raise SystemExit(f"--systems: {name!r} is not KIND-WORKERS (e.g. fastapi-2)")
        workers = int(count)
        if kind in ("modelcycle", "modelcycle-pipeline"):
            compiled = kind == "modelcycle"
            systems.append(modelcycle_system(champion, workers, token, scratch, compiled))
        elif kind == "fastapi":
            systems.append(fastapi_system(champion, workers, threads))
        elif kind in ("mlflow", "bentoml"):
            venv = anchors / kind
            if not (venv / "bin" / kind).exists():
                print(f"skipped {name}: no {kind} executable in {venv}/bin")
                continue
            if kind == "mlflow":
                systems.append(mlflow_system(champion, workers, threads, venv, scratch, rows))
            else:
                systems.append(bentoml_system(champion, workers, threads, venv))
        else:
            raise SystemExit(f"--systems: unknown system {kind!r} in {name!r}")
    return systems


def start(system: System, logs: Path, probe_row: dict[str, Any]) -> None:
    """Start the server in its own process group and wait for its first real prediction."""
    system.log_path = logs / f"{system.name}.log"
    began = time.perf_counter()
    with system.log_path.open("wb") as log:
        system.process = subprocess.Popen(
            system.command,
            cwd=system.cwd,
            env=system.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    headers = {"Authorization": system.auth} if system.auth else {}
    deadline = began + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=30) as client:
        while time.perf_counter() < deadline:
            if system.process.poll() is not None:
                tail = system.log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{system.name} exited while starting; its log ends:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                response = client.post(
                    system.url + system.single_path,
                    json=system.single_body(probe_row),
                    headers=headers,
                )
                if response.status_code == 200:
                    system.cold_start_s = time.perf_counter() - began
                    system.acknowledged_rows += 1
                    return
            time.sleep(0.25)
    raise SystemExit(f"{system.name} did not answer a prediction within {STARTUP_TIMEOUT_S} s")


def stop(system: System) -> None:
    """SIGTERM to the server's process group (its workers too), SIGKILL after 15 s."""
    if system.process is None or system.process.poll() is not None:
        return
    pgid = system.process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        system.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        system.process.wait(timeout=5)


# =============================================================================================
# CPU of a server's process tree, from /proc
# =============================================================================================


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of a process and all its live descendants (reaped ones are lost)."""
    tree, todo, total = _children(), [root], 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        todo.extend(tree.get(pid, []))
    return total


# =============================================================================================
# Load
# =============================================================================================


def write_bodies(system: System, rows: list[dict[str, Any]], folder: Path, size: int) -> Path:
    """One JSON body a line; 1-row bodies take consecutive rows, 100-row bodies windows."""
    count = SINGLE_BODIES if size == 1 else BATCH_BODIES
    path = folder / f"{system.name}-{size}.jsonl"
    with path.open("w") as f:
        for i in range(count):
            start_at = (i * size) % (len(rows) - size)
            f.write(json.dumps(system.body(rows[start_at : start_at + size])) + "\n")
    return path


def run_wrk(system: System, bodies: Path, point: LoadPoint, seconds: float) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_BODIES": str(bodies),
        "BENCH_PATH": system.path(point.rows),
        "BENCH_ROWS": str(point.rows),
        "BENCH_AUTH": system.auth or "",
    }
    threads = min(point.connections, 2)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{point.connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(WRK_SCRIPT),
        system.url,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            outcome = json.loads(line.removeprefix("BENCH_RESULT "))
            system.acknowledged_rows += outcome["rows_answered"]
            system.unread_rows_bound += point.connections * point.rows
            return outcome
    raise SystemExit(f"wrk gave no result for {system.name}: {result.stdout}\n{result.stderr}")


def measure(
    system: System, bodies: Path, point: LoadPoint, seconds: float, warmup: float
) -> dict[str, Any]:
    if warmup > 0:
        run_wrk(system, bodies, point, warmup)
    assert system.process is not None
    cpu_before = tree_cpu_seconds(system.process.pid)
    load_before = os.getloadavg()[0]
    result = run_wrk(system, bodies, point, seconds)
    cpu = tree_cpu_seconds(system.process.pid) - cpu_before
    seconds_run = result["duration_us"] / 1e6
    socket_errors = sum(
        result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return {
        "system": system.name,
        "point": point.name,
        "connections": point.connections,
        "rows_per_request": point.rows,
        "seconds": seconds_run,
        "requests": result["requests"],
        "ok": result["ok"],
        "rows_answered": result["rows_answered"],
        "requests_per_s": result["ok"] / seconds_run,
        "rows_per_s": result["rows_answered"] / seconds_run,
        "p50_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "errors": result["failed"] + socket_errors,
        "statuses": result["statuses"],
        "socket_errors": socket_errors,
        "server_cpu_ms_per_request": 1000 * cpu / max(result["ok"], 1),
        "load_average": [load_before, os.getloadavg()[0]],
    }


# =============================================================================================
# The prediction log: every answered row recorded once
# =============================================================================================


def id_check(
    system: System, rows: list[dict[str, Any]], requests: int = 400, concurrency: int = 8
) -> dict[str, Any]:
    """Send requests of 1-20 rows from `concurrency` threads and keep every id answered, so
    the log can be checked id by id (wrk cannot keep the ids of what it read)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    answered: dict[str, int] = {}
    failures: list[str] = []
    lock = threading.Lock()
    local = threading.local()

    def send(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(
                base_url=system.url, timeout=30, headers={"Authorization": system.auth or ""}
            )
        size = 1 + (i * 7) % 20
        start_at = (i * 37) % (len(rows) - size)
        response = client.post(
            system.batch_path, json=system.batch_body(rows[start_at : start_at + size])
        )
        with lock:
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            for prediction in body["predictions"]:
                answered[prediction["id"]] = body["version"]
            system.acknowledged_rows += len(body["predictions"])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(requests)))
    return {"answered": answered, "failures": failures}


def log_check(system: System, ids: dict[str, Any]) -> dict[str, Any]:
    """The modelcycle log against what its clients were told: the checked ids exactly once with
    the version that answered, and the record count against every row acknowledged."""
    from modelcycle.serving import read_predictions

    frame = read_predictions(system.extra["log_root"], MODEL)
    logged = frame["id"].value_counts()
    versions = dict(zip(frame["id"], frame["version"], strict=True))
    answered = ids["answered"]
    missing = [i for i in answered if i not in logged.index]
    twice = int((logged > 1).sum())
    wrong_version = [i for i, v in answered.items() if i in versions and versions[i] != v]
    records = len(frame)
    extra = records - system.acknowledged_rows
    ok = (
        not missing
        and not twice
        and not wrong_version
        and not ids["failures"]
        and 0 <= extra <= system.unread_rows_bound
    )
    line = (
        f"log records ({system.name}): {records:,} records for {system.acknowledged_rows:,} rows "
        f"acknowledged to clients (+{extra:,}; wrk stopped reading with at most "
        f"{system.unread_rows_bound:,} rows in flight); of {len(answered):,} ids checked one by "
        f"one, {len(missing)} missing, {twice} logged twice, {len(wrong_version)} with another "
        f"version, {len(ids['failures'])} failed requests; goal: every answered row once "
        f"{'PASS' if ok else 'MISS'}"
    )
    return {
        "system": system.name,
        "records": records,
        "acknowledged_rows": system.acknowledged_rows,
        "unread_rows_bound": system.unread_rows_bound,
        "ids_checked": len(answered),
        "missing": len(missing),
        "logged_twice": twice,
        "wrong_version": len(wrong_version),
        "failed_requests": ids["failures"][:10],
        "refused_segments": list(frame.attrs.get("refused", [])),
        "pass": ok,
        "line": line,
    }


# =============================================================================================
# The champion and its rows
# =============================================================================================


def train_champion(home: Path) -> None:
    """`modelcycle train configs/demo.yaml` in a fresh state folder: the demo's first champion."""
    env = _clean_env(MODELCYCLE_HOME=str(home), PYTHONPATH=str(REPO))
    print(f"training the demo champion in {home} (configs/demo.yaml, with its search)")
    began = time.perf_counter()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "modelcycle"), "train", str(DEMO_CONFIG)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(f"trained in {time.perf_counter() - began:.0f} s")


def read_champion(home: Path) -> Champion:
    os.environ["MODELCYCLE_HOME"] = str(home)
    from modelcycle.config import load_config
    from modelcycle.registry import Registry
    from modelcycle.settings import get_settings

    settings = get_settings()
    record = Registry(settings.registry_url).champion(MODEL)
    if record is None:
        raise SystemExit(f"{home}: {MODEL} has no champion; run the demo or omit --home")
    config = load_config(DEMO_CONFIG)
    features = (*config.features.numeric, *config.features.categorical)
    return Champion(
        home=home,
        version=record.version,
        model_file=Path(record.model_location),
        sha256=record.model_sha256,
        features=tuple(features),
    )


def unseen_rows(champion: Champion) -> list[dict[str, Any]]:
    """The features of every respondent from 2008 on, in a fixed shuffled order, NaN as null."""
    import pandas as pd

    from modelcycle.data import ensure_demo_file
    from modelcycle.settings import get_settings

    table = pd.read_parquet(ensure_demo_file(get_settings().data_dir))
    unseen = table.loc[table["year"] >= UNSEEN_FROM_YEAR, list(champion.features)]
    unseen = unseen.sample(frac=1.0, random_state=0)
    records = unseen.astype(object).where(unseen.notna(), None).to_dict(orient="records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in records]


# =============================================================================================
# Driver
# =============================================================================================


def median_by(results: list[dict[str, Any]], key: str) -> dict[tuple[str, str], float]:
    grouped: dict[tuple[str, str], list[float]] = {}
    for r in results:
        grouped.setdefault((r["system"], r["point"]), []).append(r[key])
    return {k: statistics.median(v) for k, v in grouped.items()}


def print_table(results: list[dict[str, Any]], systems: list[System]) -> None:
    keys = ("requests_per_s", "rows_per_s", "p50_ms", "p90_ms", "p99_ms", "errors")
    medians = {k: median_by(results, k) for k in (*keys, "server_cpu_ms_per_request")}
    header = (
        f"{'system':<14} {'load':<15} {'req/s':>8} {'rows/s':>9} {'p50 ms':>8} "
        f"{'p90 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU ms/req':>10}"
    )
    print(header)
    print("-" * len(header))
    for point in POINTS.values():
        for system in systems:
            key = (system.name, point.name)
            if key not in medians["p50_ms"]:
                continue
            print(
                f"{system.name:<14} {point.name:<15} {medians['requests_per_s'][key]:>8.1f} "
                f"{medians['rows_per_s'][key]:>9.0f} {medians['p50_ms'][key]:>8.1f} "
                f"{medians['p90_ms'][key]:>8.1f} {medians['p99_ms'][key]:>8.1f} "
                f"{medians['errors'][key]:>7.0f} "
                f"{medians['server_cpu_ms_per_request'][key]:>10.2f}"
            )


def _best(
    medians: dict[tuple[str, str], float], kind: str, point: str, pick: Callable[..., float]
) -> tuple[str, float] | None:
    found = [(s, v) for (s, p), v in medians.items() if p == point and s.startswith(kind + "-")]
    if not found:
        return None
    value = pick(v for _, v in found)
    return next((s, v) for s, v in found if v == value)


def goals(results: list[dict[str, Any]], log_checks: list[dict[str, Any]]) -> list[str]:
    """Each goal against the anchor's best variant in this run; missing anchors are said so."""
    rps = median_by(results, "requests_per_s")
    p50 = median_by(results, "p50_ms")
    p99 = median_by(results, "p99_ms")
    errors = {}
    for r in results:
        errors[r["system"]] = errors.get(r["system"], 0) + r["errors"]
    c1, c32 = POINTS["c1"].name, POINTS["c32"].name
    lines = []
    ours = _best(rps, "modelcycle", c32, max)

    def ratio_line(label: str, mine: Any, theirs: Any, want: float, higher: bool) -> None:
        if mine is None or theirs is None:
            lines.append(f"{label}: not measured (a system or load point is missing)")
            return
        ratio = mine[1] / theirs[1]
        ok = ratio >= want if higher else ratio <= want
        sign = ">=" if higher else "<="
        lines.append(
            f"{label}: {mine[0]} {mine[1]:.1f} / {theirs[0]} {theirs[1]:.1f} = {ratio:.2f} "
            f"(goal {sign} {want:g}) {'PASS' if ok else 'MISS'}"
        )

    ratio_line("throughput c=32 vs BentoML", ours, _best(rps, "bentoml", c32, max), 2, True)
    ratio_line("throughput c=32 vs mlflow", ours, _best(rps, "mlflow", c32, max), 10, True)
    ratio_line(
        "p50 c=1 vs plain FastAPI",
        _best(p50, "modelcycle", c1, min),
        _best(p50, "fastapi", c1, min),
        0.5,
        False,
    )
    ratio_line(
        "p99 c=32 vs BentoML",
        _best(p99, "modelcycle", c32, min),
        _best(p99, "bentoml", c32, min),
        0.5,
        False,
    )
    mine = {s: n for s, n in errors.items() if s.startswith("modelcycle-")}
    if mine:
        total = sum(mine.values())
        lines.append(f"errors (modelcycle): {total} (goal 0) {'PASS' if total == 0 else 'MISS'}")
    lines += [check["line"] for check in log_checks]
    return lines


def run(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="modelcycle-serving-bench-"))
    systems: list[System] = []
    try:
        if args.home is None:
            home = scratch / "state"
            home.mkdir()
            train_champion(home)
        else:
            home = args.home.resolve()
        champion = read_champion(home)
        rows = unseen_rows(champion)
        print(
            f"champion {MODEL} v{champion.version} ({champion.model_file}), "
            f"{len(rows):,} unseen rows; cores {os.cpu_count()}, load {os.getloadavg()}"
        )
        token = secrets.token_urlsafe(32)
        systems = build_systems(args, champion, scratch, token, rows)
        bodies = {
            (s.name, size): write_bodies(s, rows, scratch, size)
            for s in systems
            for size in {POINTS[p].rows for p in args.points}
        }
        for system in systems:
            start(system, scratch, rows[0])
            print(f"{system.name}: answering on {system.url} after {system.cold_start_s:.1f} s")
        results: list[dict[str, Any]] = []
        order = list(systems)
        for round_number in range(args.rounds):
            for point_key in args.points:
                point = POINTS[point_key]
                for system in order:
                    r = measure(
                        system, bodies[(system.name, point.rows)], point, args.seconds, args.warmup
                    )
                    r["round"] = round_number
                    results.append(r)
                    print(
                        f"  [{round_number + 1}] {system.name:<13} {point.name:<14} "
                        f"{r['requests_per_s']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                        f"p99 {r['p99_ms']:8.1f} ms  errors {r['errors']}  "
                        f"load {r['load_average'][1]:.1f}",
                        flush=True,
                    )
                order = order[1:] + order[:1]  # rotate: nobody always goes first
        log_checks = []
        for system in systems:
            if "log_root" in system.extra:
                log_checks.append(log_check(system, id_check(system, rows)))
        print()
        print_table(results, systems)
        print()
        for line in goals(results, log_checks):
            print(line)
        write_results(args, champion, systems, results, log_checks)
    finally:
        for system in systems:
            stop(system)
        if args.keep_temp:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def write_results(
    args: argparse.Namespace,
    champion: Champion,
    systems: list[System],
    results: list[dict[str, Any]],
    log_checks: list[dict[str, Any]],
) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"serving-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "command": sys.argv,
                "champion_version": champion.version,
                "cores": os.cpu_count(),
                "seconds": args.seconds,
                "warmup": args.warmup,
                "anchor_threads": args.anchor_threads,
                "cold_start_s": {s.name: s.cold_start_s for s in systems},
                "results": results,
                "log_checks": [{k: v for k, v in c.items() if k != "line"} for c in log_checks],
            },
            indent=2,
        )
    )
    print(f"results: {path}")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="per load point (20)")
    parser.add_argument("--warmup", type=float, default=3, help="before each point (3)")
    parser.add_argument("--rounds", type=int, default=1, help="medians over rounds (1)")
    parser.add_argument(
        "--systems",
        type=_csv,
        default=list(DEFAULT_SYSTEMS),
        help=f"KIND-WORKERS, comma-separated (default {','.join(DEFAULT_SYSTEMS)})",
    )
    parser.add_argument(
        "--points",
        type=_csv,
        default=list(POINTS),
        help=f"load points, comma-separated (default {','.join(POINTS)})",
    )
    parser.add_argument(
        "--home", type=Path, help="a MODELCYCLE_HOME whose gss-income champion to serve"
    )
    parser.add_argument(
        "--anchors",
        type=Path,
        default=Path("/work/anchors"),
        help="folder with the mlflow/ and bentoml/ virtual environments",
    )
    parser.add_argument(
        "--anchor-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for the anchors (1); 0 leaves it unset, as their docs do",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep bodies and server logs")
    args = parser.parse_args(argv)
    unknown = [p for p in args.points if p not in POINTS]
    if unknown:
        parser.error(f"--points: unknown {unknown}; choose from {list(POINTS)}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    return args


def main() -> None:
    run(parse_args())


if __name__ == "__main__":
    main()
