"""Where modelcycle keeps its state: one folder, and the two URLs that can move out of it.

Every setting is read here and only here, when asked for, never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "MODELCYCLE_HOME"
REGISTRY_URL_ENV = "MODELCYCLE_REGISTRY_URL"
ARTIFACT_STORE_ENV = "MODELCYCLE_ARTIFACT_STORE"
DEFAULT_HOME = ".modelcycle"


@dataclass(frozen=True)
class Settings:
    """Resolved locations; `home` holds everything unless the URLs point elsewhere."""

    home: Path
    registry_url: str
    artifact_store: str

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
    return Settings(home=home, registry_url=registry_url, artifact_store=artifact_store)
