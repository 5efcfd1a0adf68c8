"""Data preparation steps of the training flow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from modelcycle import data
from modelcycle.artifacts import fingerprint_frame
from modelcycle.config import PipelineConfig, TrainingOverrides, apply_overrides, load_config
from modelcycle.data import CleaningReport
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
def load_data(config: PipelineConfig, data_dir: Path) -> tuple[pd.DataFrame, str, pd.Series | None]:
    """The declared columns of the source in the period (PII already dropped), where they came
    from, and which rows repeat an earlier row of the file (when duplicates are dropped)."""
    source = data.resolve_source(config, data_dir)
    loaded = data.load_source(config, source)
    table = loaded.table
    get_run_logger().info("Loaded %d rows x %d columns from %s", *table.shape, source)
    if config.data.time_range is not None:
        get_run_logger().info(
            "Time range %s on %s", config.data.time_range.describe(), config.time_column
        )
    return table, str(source), loaded.duplicated


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
