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
ESTIMATOR_PACKAGES_ENV = "MODELCYCLE_ESTIMATOR_PACKAGES"
DEBUG_ENV = "MODELCYCLE_DEBUG"
PRIVACY_KEY_ENV = "MODELCYCLE_PRIVACY_KEY"
PRIVACY_KEY_FILE = "privacy-key"
LOG_RETENTION_ENV = "MODELCYCLE_LOG_RETENTION_DAYS"
# Six months: the EU AI Act (Article 19) asks providers to keep automatically generated logs
# for at least six months; a longer period is a setting, a shorter one is refused below it.
DEFAULT_LOG_RETENTION_DAYS = 183
# `model.estimator` names a class to import; importing runs a module's code, so only these
# packages (and the ones ESTIMATOR_PACKAGES_ENV adds) are ever imported for it.
DEFAULT_ESTIMATOR_PACKAGES = ("sklearn",)
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
    estimator_packages: tuple[str, ...] = DEFAULT_ESTIMATOR_PACKAGES
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS

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
        estimator_packages=_estimator_packages(),
        log_retention_days=_log_retention_days(),
    )


def _log_retention_days() -> int:
    """Days the prediction log (predictions and feedback) is kept before the retention flow
    removes it: at least six months, the EU AI Act's floor for such logs."""
    raw = os.environ.get(LOG_RETENTION_ENV)
    if not raw:
        return DEFAULT_LOG_RETENTION_DAYS
    if not raw.isdigit() or int(raw) < DEFAULT_LOG_RETENTION_DAYS:
        raise ConfigError(
            f"{LOG_RETENTION_ENV}={raw!r}: expected a whole number of days >= "
            f"{DEFAULT_LOG_RETENTION_DAYS} (six months)"
        )
    return int(raw)


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


def _estimator_packages() -> tuple[str, ...]:
    """scikit-learn, plus the comma-separated packages (or dotted module prefixes) a team adds,
    e.g. `MODELCYCLE_ESTIMATOR_PACKAGES=xgboost,lightgbm`. Import names, not distribution names."""
    raw = os.environ.get(ESTIMATOR_PACKAGES_ENV, "")
    added = [name.strip() for name in raw.split(",") if name.strip()]
    bad = [name for name in added if not all(part.isidentifier() for part in name.split("."))]
    if bad:
        raise ConfigError(
            f"{ESTIMATOR_PACKAGES_ENV}={raw!r}: {bad} are not importable package names; "
            "expected a comma-separated list such as 'xgboost,lightgbm'"
        )
    return tuple(dict.fromkeys([*DEFAULT_ESTIMATOR_PACKAGES, *added]))


def debug_enabled() -> bool:
    """Whether the command line shows full tracebacks (MODELCYCLE_DEBUG=1, like --verbose)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def privacy_key(settings: Settings | None = None) -> bytes:
    """The secret of the keyed hash (HMAC-SHA256) that stands for a data subject's key in the
    prediction log and the audit log: MODELCYCLE_PRIVACY_KEY, else a random key created once
    in the state folder, readable by its owner only. Without the key a hash cannot be turned
    back into the value, nor a guessed value checked against it."""
    raw = os.environ.get(PRIVACY_KEY_ENV)
    if raw:
        if len(raw) < 32:
            raise ConfigError(f"{PRIVACY_KEY_ENV}: expected at least 32 characters")
        return raw.encode()
    import secrets

    home = (settings or get_settings()).home
    path = home / PRIVACY_KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path}: readable by other users; expected mode 0600")
    return path.read_text().strip().encode()
