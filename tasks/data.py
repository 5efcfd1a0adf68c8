"""Data preparation steps of the training flow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from modelcycle import data
from modelcycle.artifacts import fingerprint_frame
from modelcycle.config import PipelineConfig, TrainingOverrides, apply_overrides, load_config
from modelcycle.data import CleaningReport
from modelcycle.logstore import compact
from modelcycle.training import build_pipeline
from tasks.common import TASK_OPTIONS


@task(name="load-config", **TASK_OPTIONS)
def load_pipeline_config(
    config_path: str, overrides: TrainingOverrides | None = None
) -> PipelineConfig:
    """The validated config; the estimator is checked here too, before any data is read."""
    config = load_config(config_path)
    config = apply_overrides(config, overrides, f"{config_path} (with run overrides)")
    build_pipeline(config)
    return config


@task(name="load-data", **TASK_OPTIONS)
def load_data(config: PipelineConfig, data_dir: Path) -> data.TrainingRows:
    """The declared columns of the source in the period (PII already dropped), and the
    labelled prediction log's rows when the config asks for them; where they came from, and
    which rows repeat an earlier row of the file (when duplicates are dropped)."""
    logger = get_run_logger()
    log_source = config.data.prediction_log
    file_rows, file_source = None, None
    if log_source is None or not log_source.only:
        path = data.resolve_source(config, data_dir)
        file_rows, file_source = data.load_source(config, path), str(path)
        logger.info("Loaded %d rows x %d columns from %s", *file_rows.table.shape, path)
        if config.data.time_range is not None:
            logger.info(
                "Time range %s on %s", config.data.time_range.describe(), config.time_column
            )
    if log_source is not None and log_source.parts is None:  # a pin reads only its parts
        _compact_log(data.log_root(log_source), log_source.model or config.name)
    rows = data.combine_sources(config, file_rows, file_source)
    if rows.log is not None:
        log = rows.log
        logger.info(
            "Prediction log %s: %d labelled of %d predictions (%s) from %d parts",
            log.root,
            log.labelled,
            log.predictions,
            log.source.describe(),
            len(log.parts),
        )
        if log.foreign_feedback:
            logger.warning("Ignored %d feedback records naming another model", log.foreign_feedback)
    return rows


def _compact_log(root: str, model: str) -> None:
    """Sealed segments become parts first, so what the service has finished writing is read
    (segments still open by a live writer are not, and are said to be)."""
    report = compact(root, model)
    logger = get_run_logger()
    if report.segments:
        logger.info("Compacted %d log segments of %s", len(report.segments), model)
    if report.still_open:
        logger.info(
            "%d log segments of %s are still being written and are not read: %s",
            len(report.still_open),
            model,
            ", ".join(report.still_open),
        )
    for refused in report.refused:
        logger.error("Prediction log: refused %s", refused)


@task(name="validate-data", **TASK_OPTIONS)
def validate_data(
    table: pd.DataFrame, config: PipelineConfig, source: str, duplicated: pd.Series | None = None
) -> None:
    data.validate(table, config, source, duplicated)


@task(name="clean-data", **TASK_OPTIONS)
def clean_data(
    table: pd.DataFrame, config: PipelineConfig, duplicated: pd.Series | None = None
) -> tuple[pd.DataFrame, CleaningReport]:
    cleaned, report = data.clean(table, config, duplicated)
    logger = get_run_logger()
    logger.info("Cleaning kept %d of %d rows", report.rows_out, report.rows_in)
    if report.duplicates_on is not None:
        logger.info("Dropped %d duplicate rows", report.dropped_duplicates)
    return cleaned, report


@task(name="split-data", **TASK_OPTIONS)
def split_data(table: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, holdout = data.split(table, config)
    get_run_logger().info(
        "Split (%s): %d training rows, %d holdout rows",
        config.split.strategy,
        len(train),
        len(holdout),
    )
    return train, holdout


@task(name="fingerprint-data", **TASK_OPTIONS)
def fingerprint_data(train: pd.DataFrame, holdout: pd.DataFrame) -> dict[str, str]:
    return {"train": fingerprint_frame(train), "holdout": fingerprint_frame(holdout)}


@task(name="profile-data", **TASK_OPTIONS)
def profile_data(train: pd.DataFrame, holdout: pd.DataFrame) -> dict[str, object]:
    return {"train": data.profile(train), "holdout": data.profile(holdout)}
