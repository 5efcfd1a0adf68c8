"""Does shadow scoring cost the answers anything? The same service, shadow off and on in turn.

    .venv/bin/python benchmarks/shadow.py                 # ~4 min here (two trainings)
    .venv/bin/python benchmarks/shadow.py --requests 400 --rounds 2

Trains the demo pipeline twice in a temporary MODELCYCLE_HOME (`modelcycle train
configs/demo.yaml --skip-search`, seeds 0 and 7: the second becomes champion, the first is the
challenger), starts one `modelcycle serve` worker (strict durability, bearer token), then
alternates phases: shadow off, shadow on (`Rollouts.start(..., mode="shadow")`, waited for
until shadow rows reach the log), off again (the experiment stopped), ... Each phase sends the
same single-row requests (unseen survey years 2008-2018), at concurrency 1 and at concurrency
4 (threads with keep-alive clients). Prints p50/p99 per phase, the on/off ratios (medians over
rounds, in this run), whether every answer was identical with and without shadow, and how many
shadow rows were logged against the rows answered while it was on.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
MODEL = "gss-income"


def _env(home: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MODELCYCLE_", "PREFECT_"))}
    return {
        **keep,
        "MODELCYCLE_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **extra,
    }


def train(home: Path, seed: int) -> None:
    began = time.perf_counter()
    command = [str(Path(sys.executable).parent / "modelcycle"), "train", str(DEMO_CONFIG)]
    result = subprocess.run(
        [*command, "--skip-search", "--seed", str(seed)],
        env=_env(home),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"training failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    print(f"trained seed {seed} in {time.perf_counter() - began:.0f} s")


def rows(home: Path, n: int) -> list[dict[str, Any]]:
    import pandas as pd

    from modelcycle.config import load_config
    from modelcycle.data import ensure_demo_file

    config = load_config(DEMO_CONFIG)
    table = pd.read_parquet(ensure_demo_file(home / "data"))
    unseen = table.loc[table["year"] >= 2008, config.features.all].sample(n, random_state=0)
    records = unseen.astype(object).where(unseen.notna(), None).to_dict(orient="records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in records]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def phase(url: str, token: str, bodies: list[dict[str, Any]], concurrency: int) -> dict:
    """Send every body once; latencies in ms and the answers (without ids), in body order."""
    latencies: list[float] = [0.0] * len(bodies)
    answers: list[Any] = [None] * len(bodies)
    ids: list[str] = []
    lock = threading.Lock()

    def worker(start: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(start, len(bodies), concurrency):
                began = time.perf_counter()
                response = client.post(f"/v1/models/{MODEL}/predict", json=bodies[i])
                latencies[i] = (time.perf_counter() - began) * 1000
                response.raise_for_status()
                body = response.json()
                answers[i] = [
                    {k: v for k, v in p.items() if k != "id"} for p in body["predictions"]
                ]
                with lock:
                    ids.extend(p["id"] for p in body["predictions"])

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "answers": answers,
        "ids": ids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per phase")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelcycle-shadow-bench-") as scratch:
        home = Path(scratch)
        train(home, 0)
        train(home, 7)
        os.environ["MODELCYCLE_HOME"] = str(home)
        from modelcycle.registry import ExperimentStatus, Registry, Rollouts
        from modelcycle.serving import read_predictions
        from modelcycle.settings import get_settings

        url_db = get_settings().registry_url
        champion = Registry(url_db).champion(MODEL)
        challenger = 1 if champion.version == 2 else 2
        bodies = [{"rows": [r]} for r in rows(home, args.requests)]
        token, port = secrets.token_urlsafe(16), _port()
        log_root = home / "predictions"
        env = _env(
            home,
            MODELCYCLE_SERVE_TOKENS=token,
            MODELCYCLE_SERVE_POLL_SECONDS="0.5",
            MODELCYCLE_SERVE_LOG_ROOT=str(log_root),
        )
        command = [str(Path(sys.executable).parent / "modelcycle"), "serve", "--model", MODEL]
        process = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "1"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            phase(url, token, bodies[:50], 1)  # warm-up
            rollouts = Rollouts(url_db)
            results: dict[tuple[str, int], list[dict]] = {}
            identical = True
            shadow_rows = answered_on = 0
            for _ in range(args.rounds):
                for state in ("off", "on"):
                    if state == "on":
                        started = rollouts.start(
                            MODEL, challenger, mode="shadow", actor="bench", reason="bench"
                        )
                        probe = phase(url, token, bodies[:1], 1)["ids"][0] + ".shadow"
                        while probe not in set(read_predictions(str(log_root), MODEL)["id"]):
                            time.sleep(0.2)
                            probe = phase(url, token, bodies[:1], 1)["ids"][0] + ".shadow"
                    for concurrency in (1, 4):
                        measured = phase(url, token, bodies, concurrency)
                        results.setdefault((state, concurrency), []).append(measured)
                        if state == "on":
                            answered_on += len(measured["ids"])
                            time.sleep(1.0)  # let the queue drain before counting
                            logged = set(read_predictions(str(log_root), MODEL)["id"])
                            shadow_rows += sum(i + ".shadow" in logged for i in measured["ids"])
                    if state == "on":
                        rollouts.finish(
                            started.experiment.id,
                            ExperimentStatus.STOPPED,
                            evidence={},
                            actor="bench",
                            reason="bench phase over",
                        )
                        time.sleep(1.5)  # the worker polls and drops the shadow
            reference = results[("off", 1)][0]["answers"]
            for runs in results.values():
                identical &= all(r["answers"] == reference for r in runs)
        finally:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
    print(f"\n{args.requests} single-row requests per phase, {args.rounds} off/on rounds")
    print(f"{'concurrency':>11} {'shadow':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for (state, concurrency), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        print(f"{concurrency:>11} {state:>6} {p50:>8.2f} {p99:>8.2f}")
    for concurrency in (1, 4):
        on, off = results[("on", concurrency)], results[("off", concurrency)]
        for stat in ("p50", "p99"):
            ratios = [a[stat] / b[stat] for a, b in zip(on, off, strict=True)]
            print(
                f"c={concurrency} {stat} on/off: {statistics.median(ratios):.2f} "
                f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
    print(f"answers identical with and without shadow: {identical}")
    print(f"shadow rows logged: {shadow_rows} of {answered_on} answered while on")


if __name__ == "__main__":
    main()
