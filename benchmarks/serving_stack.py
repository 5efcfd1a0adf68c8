"""Which web stack for the prediction service's hot path: FastAPI or plain Starlette.

    python benchmarks/serving_stack.py                  # 10 s per point, 2 rounds
    python benchmarks/serving_stack.py --seconds 20 --rounds 3

`modelcycle` is the service as shipped (FastAPI for the OpenAPI page, its prediction routes
as plain Starlette routes); `fastapi` (every route through FastAPI) and `starlette` serve the
same `modelcycle.serving.Service` (same parsing, micro-batching, durable prediction log, auth
off) for the same demo champion, one uvicorn worker each, uvloop and httptools; only the
framework's routing and request handling differ. Single-row POSTs from `wrk` (Debian package)
at concurrency 1 and 8, stacks interleaved per round; prints requests/s, p50 and p99 per stack
and the ratios to `fastapi`. (`async def` endpoints throughout: NOTES-serving.md measured a
`def` endpoint, FastAPI's thread pool, at about half the throughput at concurrency 8.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STACKS = {
    "modelcycle": "modelcycle.serving:create_app",
    "fastapi": "benchmarks.serving_stack:fastapi_app",
    "starlette": "benchmarks.serving_stack:starlette_app",
}
_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""


def starlette_app() -> Any:
    """The same service on Starlette alone (no OpenAPI page, no FastAPI request handling)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from modelcycle.serving import RequestRefused, Service, read_settings

    service = Service(read_settings())

    async def predict(request: Request) -> Any:
        return await service.predict(request, request.path_params["name"], None)

    async def ready(_request: Request) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"ready": service.catalog.ready}, 200 if service.catalog.ready else 503)

    async def refused(_request: Request, exc: Exception) -> Any:
        from starlette.responses import JSONResponse

        assert isinstance(exc, RequestRefused)
        return JSONResponse(exc.body(), exc.status)

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        await service.start()
        yield
        await service.stop()

    return Starlette(
        routes=[
            Route("/v1/models/{name}/predict", predict, methods=["POST"]),
            Route("/readyz", ready),
        ],
        exception_handlers={RequestRefused: refused},
        lifespan=lifespan,
    )


def fastapi_app() -> Any:
    """The service's app with FastAPI's routes answering the hot path too."""
    from starlette.routing import Route

    from modelcycle.serving import create_app

    app = create_app()
    app.router.routes[:] = [
        r for r in app.router.routes if not (type(r) is Route and r.path.startswith("/v1/"))
    ]
    return app


def _train(home: Path) -> str:
    """The demo champion (search off, the demo's parameters), registered as version 1."""
    import yaml

    sys.path.insert(0, str(REPO / "tests"))
    from serving_support import train_and_register

    from modelcycle.data import ensure_demo_file

    raw = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    raw["data"] = {"source": str(ensure_demo_file(home / "data")), "time_range": {"end": 2000}}
    config = home / "demo.yaml"
    config.write_text(yaml.safe_dump(raw))
    url = f"sqlite:///{home / 'registry.db'}"
    trained = train_and_register(config, url, str(home / "artifacts"), 200, promote=True)
    row = trained.holdout[trained.config.features.all].iloc[0].to_dict()
    return json.dumps({"rows": [{k: (None if v != v else v) for k, v in row.items()}]})


def _serve(stack: str, home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MODELCYCLE_HOME": str(home),
        "MODELCYCLE_SERVE_INSECURE_NO_AUTH": "true",
        "MODELCYCLE_SERVE_LOG_ROOT": str(home / f"log-{stack}"),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable, "-m", "uvicorn", STACKS[stack], "--factory", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)


def _ready(port: int, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"no service on port {port}")


def _wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rate,
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stacks", nargs="+", default=list(STACKS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    home = Path(tempfile.mkdtemp(prefix="serving-stack-"))
    os.environ["MODELCYCLE_HOME"] = str(home)
    body = _train(home)
    script = home / "post.lua"
    script.write_text(_LUA.format(body=body))
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for round_ in range(args.rounds):
            for stack in args.stacks:
                port = 18000 + round_ * 10 + list(STACKS).index(stack)
                process = _serve(stack, home, port)
                try:
                    _ready(port)
                    path = (
                        "/v1/def/demo/predict"
                        if stack == "fastapi-def"
                        else "/v1/models/gss-income/predict"
                    )
                    url = f"http://127.0.0.1:{port}{path.replace('demo', 'gss-income')}"
                    _wrk(url, script, 8, 3)  # warm-up
                    for connections in (1, 8):
                        point = _wrk(url, script, connections, args.seconds)
                        results.setdefault((stack, connections), []).append(point)
                        print(stack, f"c={connections}", point, flush=True)
                finally:
                    os.killpg(process.pid, 15)
                    process.wait(timeout=30)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("\nmedians over rounds")
    print(f"{'stack':<12} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for (stack, connections), points in sorted(results.items()):
        med = {k: statistics.median(p[k] for p in points) for k in points[0]}
        print(
            f"{stack:<12} {connections:>3} {med['rps']:>8.0f} {med['p50_ms']:>8.2f} "
            f"{med['p99_ms']:>8.2f} {med['errors']:>6.0f}"
        )
    for connections in (1, 8):
        base = results.get(("fastapi", connections))
        for stack in ("starlette", "modelcycle"):
            other = results.get((stack, connections))
            if base and other:
                ratio = statistics.median(p["rps"] for p in other) / statistics.median(
                    p["rps"] for p in base
                )
                print(f"{stack}/fastapi req/s at c={connections}: {ratio:.2f}")


if __name__ == "__main__":
    main()
