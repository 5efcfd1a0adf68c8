"""A model version ready to answer: its verified pipeline, the config it was trained with, and
the request schema derived from that config.

Loading goes only through `modelcycle.artifacts.load_model` (SHA-256 against the registry,
skops with trusted types). The config comes from the run's manifest, as monitoring reads it,
and its hash must equal the one the registry recorded, so a manifest edited after
registration cannot change what the service accepts.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelcycle.artifacts import config_hash, load_compiled, load_model
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.errors import IntegrityError
from modelcycle.monitoring import REFERENCE_DATA
from modelcycle.registry import ModelVersion, VerifiedRun, open_run
from modelcycle.serving._fast import FastPredictor, build_fast_predictor
from modelcycle.serving._schema import InputSchema, build_schema
from modelcycle.training import runtime_version

logger = logging.getLogger(__name__)

logger = logging.getLogger("modelcycle.serving")
# Rows of the run's reference sample the fast path is checked on when a version is loaded
# (edge rows are added to them); enough to reach most leaves, a fraction of a second.
PARITY_SAMPLE_ROWS = 2000


@dataclass(frozen=True)
class Predictions:
    """Outputs for the rows of one micro-batch, in order."""

    labels: list[Any]
    probabilities: list[dict[str, float]] | None


@dataclass(frozen=True)
class ServedModel:
    """One verified version; shared read-only by every request of a worker."""

    record: ModelVersion
    pipeline: Any
    config: PipelineConfig
    schema: InputSchema
    classes: tuple[Any, ...] | None
    loaded_at: datetime
    # "treelite 4.8.1" when `pipeline` is the version's verified compiled form, else None.
    compiled: str | None = None
    fast: FastPredictor | None = None
    fast_reason: str = "off"  # "ok" when `fast` serves, else why it does not

    @property
    def name(self) -> str:
        return self.record.model_name

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def predict(self, batches: list[Any]) -> Predictions:
        """Predict a micro-batch; run in the worker's single prediction thread. The fast path
        (checked against the pipeline when the version was loaded) reads the parsed columns;
        otherwise one DataFrame goes through the pipeline."""
        if self.fast is not None:
            return self._answers(self.fast.predict_values(batches))
        frame = self.schema.frame(batches)
        if self.classes is None:
            values = np.asarray(self.pipeline.predict(frame), dtype="float64")
            return Predictions([float(v) for v in values], None)
        if not hasattr(self.pipeline, "predict_proba"):
            return Predictions([_plain(v) for v in self.pipeline.predict(frame)], None)
        return self._answers(np.asarray(self.pipeline.predict_proba(frame), dtype="float64"))

    def _answers(self, values: np.ndarray) -> Predictions:
        """Labels (and probabilities) from the probabilities, or predictions, of a batch."""
        if self.classes is None:
            return Predictions([float(v) for v in values], None)
        proba = values
        keys = [str(c) for c in self.classes]
        labels = [self.classes[i] for i in proba.argmax(axis=1)]
        rows = [dict(zip(keys, map(float, row), strict=True)) for row in proba.tolist()]
        return Predictions(labels, rows)

    def label_for(self, value: Any) -> Any | None:
        """The class a feedback label names (1, "1" and 1.0 all name class 1), or None."""
        return class_named(self.classes, value)

    def lineage(self) -> dict[str, Any]:
        r = self.record
        return {
            "version": r.version,
            "status": r.status.value,
            "aliases": list(r.aliases),
            "parent_version": r.parent_version,
            "run_id": r.run_id,
            "model_sha256": r.model_sha256,
            "data_fingerprint": r.data_fingerprint,
            "config_hash": r.config_hash,
            "code_version": r.code_version,
            "created_at": r.created_at.isoformat(),
            "created_by": r.created_by,
            "metrics": dict(r.metrics),
            "gate_decision": r.gate.get("decision"),
            "compiled_form": self.compiled,  # the runtime answering, or None: the pipeline
        }


def class_named(classes: tuple[Any, ...] | None, value: Any) -> Any | None:
    """The class of `classes` a label names (1, "1" and 1.0 all name class 1), or None."""
    if classes is None:
        return None
    for cls in classes:
        if isinstance(value, bool) != isinstance(cls, bool):
            continue
        if value == cls or str(value) == str(cls):
            return cls
    return None


def load_served(
    record: ModelVersion,
    pii_policy: Literal["refuse", "drop"],
    use_compiled: bool = True,
    fast_path: bool = True,
) -> ServedModel:
    """Verify and load one registered version; raises IntegrityError when anything differs.

    With `use_compiled`, a compiled form training kept answers instead of the pipeline (the
    pipeline still defines the request schema); a compiled file that does not verify refuses
    the version like a changed model file would. Otherwise, with `fast_path`, the numpy path
    is built and checked against the pipeline on the run's reference sample and edge rows;
    when it cannot be, the reason is logged and kept.
    """
    run = open_run(record)
    manifest = run.manifest
    raw_config = manifest.get("config")
    if not isinstance(raw_config, dict) or config_hash(raw_config) != record.config_hash:
        raise IntegrityError(
            f"{record.model_name} v{record.version}: the config in its run manifest does not "
            "hash to the config_hash the registry recorded"
        )
    config = parse_config(raw_config, f"{record.model_name} v{record.version} manifest config")
    pipeline = load_model(record.model_location, record.model_sha256)
    classes = None
    if config.task.is_classification:
        classes = tuple(_plain(c) for c in np.asarray(pipeline.classes_).tolist())
    compiled = _compiled_form(run, manifest) if use_compiled else None
    fast, reason = None, "off (MODELCYCLE_SERVE_FAST_PATH=false)"
    if compiled is not None:
        reason = f"off: the compiled form serves ({_runtime_of(compiled)})"
    elif fast_path:
        fast, reason = _fast_path(run, record, config, pipeline, classes is not None)
    return ServedModel(
        record=record,
        pipeline=pipeline if compiled is None else compiled,
        config=config,
        schema=build_schema(config, pipeline, pii_policy),
        classes=classes,
        loaded_at=datetime.now(UTC),
        compiled=None if compiled is None else _runtime_of(compiled),
        fast=fast,
        fast_reason=reason,
    )


def _fast_path(
    run: VerifiedRun,
    record: ModelVersion,
    config: PipelineConfig,
    pipeline: Any,
    is_classifier: bool,
) -> tuple[FastPredictor | None, str]:
    """The checked fast path of a version, or None and the reason (logged either way)."""
    where = f"{record.model_name} v{record.version}"
    if is_classifier and not hasattr(pipeline, "predict_proba"):
        reason = "a classifier without predict_proba"
        logger.warning("%s: the pipeline serves, no fast path: %s", where, reason)
        return None, reason
    sample = _reference_sample(run, config)
    try:
        fast, reason = build_fast_predictor(
            pipeline,
            list(config.features.numeric),
            list(config.features.categorical),
            sample,
            is_classifier,
        )
    except Exception as exc:  # the pipeline serves whatever went wrong here
        fast, reason = None, f"could not be built: {type(exc).__name__}: {exc}"
    if fast is None:
        logger.warning("%s: the pipeline serves, no fast path: %s", where, reason)
    else:
        rows = 0 if sample is None else len(sample)
        logger.info("%s: fast path on (parity checked on %d sample rows + edge rows)", where, rows)
    return fast, reason


def _reference_sample(run: VerifiedRun, config: PipelineConfig) -> pd.DataFrame | None:
    """The first rows of the run's reference sample, verified against the manifest; None when
    the run has none (edge rows alone are then checked)."""
    if REFERENCE_DATA not in run.manifest.get("files", {}):
        return None
    try:
        frame = pd.read_parquet(io.BytesIO(run.read(REFERENCE_DATA)))
    except Exception as exc:
        logger.warning("reference sample unreadable for the parity check: %s", exc)
        return None
    names = [c for c in config.features.all if c in frame.columns]
    return frame[names].head(PARITY_SAMPLE_ROWS)


def _compiled_form(run: Any, manifest: dict[str, Any]) -> Any | None:
    """The compiled form the manifest lists, read through the verified run (its bytes must
    hash to the manifest's entry) and parsed only after a second check against the SHA-256
    the training run recorded for it; None when there is none or the runtime is missing."""
    summary = manifest.get("compiled_form")
    if not isinstance(summary, dict) or not summary.get("kept") or not summary.get("file"):
        return None
    if runtime_version() is None:
        logger.warning(
            "%s has a compiled form but treelite is not installed: serving the pipeline",
            run.version.model_name,
        )
        return None
    name = summary["file"]
    data = run.read(name)
    where = f"{run.version.artifact_uri.rstrip('/')}/{name}"
    return load_compiled(data, summary["sha256"], where)


def _runtime_of(compiled: Any) -> str:
    return f"{compiled.spec['runtime']} {compiled.spec['runtime_version']}"


def _read_manifest(record: ModelVersion) -> dict[str, Any]:
    """The run manifest, only if it is the one the registry anchored for this version."""
    return open_run(record).manifest


def _plain(value: Any) -> Any:
    """numpy scalars as the JSON-ready Python values they hold."""
    return value.item() if isinstance(value, np.generic) else value
