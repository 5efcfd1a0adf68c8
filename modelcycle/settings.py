"""Where modelcycle keeps its state: one folder, and the two URLs that can move out of it.

Every setting is read here and only here, when asked for, never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelcycle.errors import ConfigError

HOME_ENV = "MODELCYCLE_HOME"
REGISTRY_URL_ENV = "MODELCYCLE_REGISTRY_URL"
ARTIFACT_STORE_ENV = "MODELCYCLE_ARTIFACT_STORE"
TRAINING_THREADS_ENV = "MODELCYCLE_TRAINING_THREADS"
DEFAULT_HOME = ".modelcycle"
# Prefect's own default, so a server started by hand and one started by `service up` agree.
DEFAULT_PORT = 4200


@dataclass(frozen=True)
class Settings:
    """Resolved locations; `home` holds everything unless the URLs point elsewhere."""

    home: Path
    registry_url: str
    artifact_store: str
    training_threads: int

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


def get_settings() -> Settings:
    """Read the environment now (not at import), so tests and the CLI can point elsewhere."""
    home = Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
    registry_url = os.environ.get(REGISTRY_URL_ENV) or f"sqlite:///{home / 'registry.db'}"
    artifact_store = os.environ.get(ARTIFACT_STORE_ENV) or str(home / "artifacts")
    return Settings(
        home=home,
        registry_url=registry_url,
        artifact_store=artifact_store,
        training_threads=_training_threads(),
    )


def _training_threads() -> int:
    """OpenMP threads for fitting: all cores but one, which Prefect's server and threads need.

    Measured on 2 cores: HistGradientBoosting's spinning OpenMP threads beside one busy
    process fit in 2.9 s with 2 threads and 1.4 s with 1; a flow test file took 143 s with
    2 threads and 40 s with 1.
    """
    raw = os.environ.get(TRAINING_THREADS_ENV)
    if not raw:
        return max(1, (os.cpu_count() or 1) - 1)
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{TRAINING_THREADS_ENV}={raw!r}: expected a whole number >= 1")
    return int(raw)
