"""Start the service: environment first (native thread caps, the metrics folder, the settings
every worker re-reads), then uvicorn with the app factory and N worker processes."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from modelcycle.registry import Registry
from modelcycle.serving._auth import ensure_token_file
from modelcycle.serving._metrics import MULTIPROC_ENV
from modelcycle.serving._settings import ServeSettings
from modelcycle.settings import get_settings

APP_FACTORY = "modelcycle.serving:create_service_app"
# Read by OpenMP and BLAS when they load, which is after these are set: each worker is a
# fresh process (spawned) that imports numpy and scikit-learn only when it builds the app.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def prepare_environment(settings: ServeSettings) -> ServeSettings:
    """Set what the workers inherit; returns the settings with the metrics folder filled in."""
    folder = Path(settings.metrics_dir or settings.home / "serve" / f"metrics-{os.getpid()}")
    if folder.exists():
        shutil.rmtree(folder)  # counters of an earlier run must not add to this one's
    folder.mkdir(parents=True)
    settings = settings.model_copy(update={"metrics_dir": str(folder)})
    for name in THREAD_ENV:
        os.environ[name] = str(settings.threads)
    os.environ[MULTIPROC_ENV] = str(folder)
    os.environ.update(settings.to_env())
    return settings


def announce(settings: ServeSettings, token_file: Path | None) -> None:
    """What a person starting the service must know; never the token itself."""
    say = sys.stderr.write
    if settings.insecure_no_auth:
        banner = "!" * 78
        say(
            f"{banner}\n!! WARNING: --insecure-no-auth: anyone who can reach "
            f"{settings.host}:{settings.port} can call the model.\n"
            f"!! Use it only for local experiments.\n{banner}\n"
        )
    elif token_file is not None:
        say(f"bearer token: in {token_file} (mode 0600); send 'Authorization: Bearer <token>'\n")
    else:
        say("bearer tokens: from MODELCYCLE_SERVE_TOKENS\n")
    if settings.host not in _LOOPBACK:
        say(f"listening on {settings.host}, not only loopback: put TLS in front of it\n")
    say(
        f"prediction log: {settings.resolved_log_root} (durability {settings.durability}); "
        f"{settings.workers} worker(s), {settings.threads} native thread(s) each\n"
    )


def check_models(settings: ServeSettings) -> None:
    """A named model must exist (a typo fails here, in one line listing the known models);
    it may still lack a champion, and is served once it has one."""
    if not settings.models:
        return
    registry = Registry(get_settings().registry_url)
    try:
        for name in settings.models:
            registry.get_model(name)
    finally:
        registry.close()


def serve(settings: ServeSettings) -> None:
    """Run until interrupted."""
    import uvicorn

    check_models(settings)
    token_file = ensure_token_file(settings)
    settings = prepare_environment(settings)
    announce(settings, token_file)
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            server_header=False,
            date_header=False,
            log_level="info",
            timeout_graceful_shutdown=10,
        )
    finally:
        shutil.rmtree(settings.metrics_dir or "", ignore_errors=True)
