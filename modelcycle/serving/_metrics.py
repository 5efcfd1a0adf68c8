"""Prometheus metrics of the service, summed over uvicorn's worker processes.

prometheus-client's multiprocess mode: each worker writes its values to files in one folder
(`PROMETHEUS_MULTIPROC_DIR`, which must be set before the library is imported, so this module
imports it only inside functions) and a scrape, answered by any worker, reads them all.
Without it each scrape would see one worker's counters. Gauges of workers that died (a
`kill -9`) are dropped at scrape time, so a dead worker's model or queue is not reported.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


@dataclass(frozen=True)
class Metrics:
    """The service's instruments; labels always name the model (and version when known)."""

    requests: Any
    rows: Any
    errors: Any
    latency: Any
    batch_rows: Any
    log_pending: Any
    log_at_risk: Any
    staleness: Any
    verification_failures: Any
    loaded: Any
    reloads: Any
    fast_path: Any
    compacted: Any
    registry: Any = None  # set when not in multiprocess mode: the registry to render


def create_metrics() -> Metrics:
    """Instruments for this process: file-backed in multiprocess mode, else in a registry of
    their own (never the global one, so building two apps in a process is allowed)."""
    from prometheus_client import CollectorRegistry

    own = None if os.environ.get(MULTIPROC_ENV) else CollectorRegistry()
    return _instruments(own)


def _instruments(own: Any) -> Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    return Metrics(
        requests=Counter(
            "modelcycle_serve_requests",
            "Prediction requests answered, by model, version, route and HTTP status.",
            ["model", "version", "route", "status"],
            registry=own,
        ),
        rows=Counter(
            "modelcycle_serve_rows",
            "Rows predicted and logged, by model and version.",
            ["model", "version"],
            registry=own,
        ),
        errors=Counter(
            "modelcycle_serve_errors",
            "Refused or failed requests by kind (validation, too_large, auth, not_found, "
            "gone, overloaded, log_failed, internal).",
            ["model", "kind"],
            registry=own,
        ),
        latency=Histogram(
            "modelcycle_serve_request_seconds",
            "Time from receiving a prediction request to answering it.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        ),
        batch_rows=Histogram(
            "modelcycle_serve_batch_rows",
            "Rows per micro-batch handed to the model.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=own,
        ),
        log_pending=Gauge(
            "modelcycle_serve_log_pending",
            "Prediction-log records queued and not yet durable.",
            registry=own,
            multiprocess_mode="livesum",
        ),
        log_at_risk=Gauge(
            "modelcycle_serve_log_at_risk",
            "Answered records a crash could still lose (relaxed durability only; 0 in strict).",
            registry=own,
            multiprocess_mode="livesum",
        ),
        staleness=Gauge(
            "modelcycle_serve_model_staleness_seconds",
            "Seconds since a worker last read the champion alias from the registry "
            "(grows while the registry is unreachable).",
            ["model"],
            registry=own,
            multiprocess_mode="livemax",
        ),
        verification_failures=Counter(
            "modelcycle_serve_verification_failures",
            "Versions refused because their files did not match the registry.",
            ["model", "version"],
            registry=own,
        ),
        loaded=Gauge(
            "modelcycle_serve_model_loaded",
            "Workers answering with this version as champion.",
            ["model", "version"],
            registry=own,
            multiprocess_mode="livesum",
        ),
        reloads=Counter(
            "modelcycle_serve_reloads",
            "Champion swaps made without a restart.",
            ["model", "version"],
            registry=own,
        ),
        fast_path=Gauge(
            "modelcycle_serve_fast_path",
            "1 when the version answers through the numpy fast path (it matched the pipeline "
            "when loaded), 0 when the pipeline serves; the reason is in the log and in GET "
            "/v1/models/{name}.",
            ["model", "version"],
            registry=own,
            multiprocess_mode="livemin",
        ),
        compacted=Counter(
            "modelcycle_serve_log_compacted",
            "Log records moved from sealed segments into Parquet by the service's compaction, "
            "by model and kind (predictions, feedback).",
            ["model", "kind"],
            registry=own,
        ),
        registry=own,
    )


def render_metrics(metrics: Metrics) -> tuple[bytes, str]:
    """The Prometheus text of every live and past worker's values."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    folder = os.environ.get(MULTIPROC_ENV)
    if metrics.registry is not None or not folder:
        return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    _forget_dead_workers(folder)
    multiprocess.MultiProcessCollector(registry, path=folder)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_workers(folder: str) -> None:
    from prometheus_client import multiprocess

    pids = set()
    for path in glob.glob(os.path.join(folder, "gauge_live*.db")):
        match = _LIVE_FILE.search(os.path.basename(path))
        if match:
            pids.add(int(match.group(1)))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
