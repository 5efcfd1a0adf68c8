"""Every setting of the prediction service, in one pydantic model read from the environment.

`modelcycle serve` resolves them once in the parent process (command-line options win over
`MODELCYCLE_SERVE_*` variables) and writes them back to the environment with `to_env`, so each
uvicorn worker process, which builds its app from an import string, reads the same values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelcycle.settings import get_settings

ENV_PREFIX = "MODELCYCLE_SERVE_"
TOKENS_ENV = f"{ENV_PREFIX}TOKENS"
TOKEN_FILE_NAME = "serve-token"


class ServeSettings(BaseSettings):
    """The prediction service's knobs; each default is stated here and nowhere else."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models to serve (comma-separated in the environment); empty serves every "
        "model that has a champion when the service starts.",
    )
    host: str = Field("127.0.0.1", description="Interface to bind; loopback unless told.")
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=64,
        description="uvicorn worker processes; default one per core (each predicts in one "
        "thread, so one worker uses about one core).",
    )
    threads: int = Field(
        1,
        ge=1,
        description="Native threads (OpenMP, BLAS) per worker. One: small batches run slower "
        "on more threads and workers share the cores (scikit-learn issue 30662; "
        "NOTES-serving.md measured 5.1 ms against 8.6 ms per row).",
    )
    poll_seconds: float = Field(
        5.0, gt=0, description="How often each worker asks the registry who the champion is."
    )
    max_batch_rows: int = Field(
        512, ge=1, description="Rows predicted together across concurrent requests."
    )
    max_wait_ms: float = Field(
        2.0,
        ge=0,
        description="Longest a batch waits for requests already being read; it never waits "
        "when no other request is in flight.",
    )
    fast_path: bool = Field(
        True,
        description="Answer through the numpy fast path when it reproduces the pipeline "
        "(checked on the run's reference sample and edge rows whenever a version is loaded; "
        "else the pipeline serves and the reason is logged). Off: always the pipeline.",
    )
    max_rows_per_request: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    pii: Literal["refuse", "drop"] = Field(
        "refuse",
        description="A request carrying a column the config declares PII: `refuse` answers "
        "422; `drop` removes it before anything is predicted or logged.",
    )
    pseudonymise_subject_keys: bool = Field(
        False,
        description="Log the config's subject_keys as a keyed hash (HMAC-SHA256 with the "
        "state folder's privacy key) instead of their value.",
    )
    durability: Literal["strict", "relaxed"] = Field(
        "strict",
        description="strict: answer only once the row's log record is durable; relaxed: "
        "answer once it is queued (a crash may lose what is queued).",
    )
    log_max_pending: int = Field(50_000, ge=1, description="Queued log records before 503.")
    log_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long the log's writer waits for more records before a write. 0: "
        "records that arrive during one fsync form the next group anyway, and a lone request "
        "does not wait (measured: one strict record 0.2 ms at 0 against 3.3-4.0 ms at 2 ms; "
        "eight concurrent submitters 3,000 against 2,300-2,600 records/s).",
    )
    log_segment_seconds: float = Field(
        600.0,
        gt=0,
        description="A worker seals its open log segment after this long (or 64 MB), so "
        "compaction can move it to Parquet.",
    )
    compact_seconds: float = Field(
        300.0,
        ge=0,
        description="How often each worker compacts sealed log segments (its own and those of "
        "workers that died) into date-partitioned Parquet; one compactor per model at a time "
        "(a file lock), so workers take turns. 0: never (run `compact` yourself).",
    )
    log_root: str | None = Field(
        None,
        description="Prediction log folder or fsspec URL; default $MODELCYCLE_HOME/predictions.",
    )
    compiled: bool = Field(
        True,
        description="Answer with a version's compiled form when training kept one (parity "
        "proven) and its SHA-256 verifies against the run manifest; false serves the "
        "pipeline. Without the `compile` extra installed, the pipeline answers.",
    )
    pinned_cache: int = Field(
        4, ge=0, description="Non-champion versions kept loaded per model for pinned routes."
    )
    insecure_no_auth: bool = Field(False, description="Answer without a bearer token.")
    tokens: SecretStr | None = Field(
        None, description="Comma-separated bearer tokens; else the state folder's secret file."
    )
    metrics_dir: str | None = Field(
        None, description="prometheus-client's multiprocess folder; set by `modelcycle serve`."
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @property
    def home(self) -> Path:
        return get_settings().home

    @property
    def resolved_log_root(self) -> str:
        return self.log_root or str(self.home / "predictions")

    @property
    def token_file(self) -> Path:
        return self.home / TOKEN_FILE_NAME

    def to_env(self) -> dict[str, str]:
        """The settings as the `MODELCYCLE_SERVE_*` variables that reproduce them."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            key = f"{ENV_PREFIX}{name.upper()}"
            if isinstance(value, SecretStr):
                env[key] = value.get_secret_value()
            elif isinstance(value, list):
                env[key] = ",".join(value)
            else:
                env[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return env


def read_settings(**overrides: object) -> ServeSettings:
    """Read the environment now; explicit values (command-line options) win."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return ServeSettings(**given)  # type: ignore[arg-type]
