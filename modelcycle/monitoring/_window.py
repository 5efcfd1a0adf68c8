"""The window a version is compared with: which files, read how (PII dropped at once), and
what about them is worth a person's attention even when nothing drifted."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from modelcycle import data
from modelcycle.config import PipelineConfig, TimeRange
from modelcycle.errors import DataError, DataValidationError
from modelcycle.utils import to_json_dict

WINDOW_SUFFIXES = (".csv", ".parquet")


def resolve_pattern(window: str, home: Path) -> str:
    """As given if it matches something; else relative to the modelcycle home folder."""
    if Path(window).is_absolute() or glob.glob(window):
        return window
    under_home = str(Path(home) / window)
    return under_home if glob.glob(under_home) else window


def window_files(pattern: str, latest_only: bool = False) -> list[Path]:
    """Files matching a path or glob, sorted by name; `latest_only` keeps the last one."""
    if glob.has_magic(pattern):
        paths = sorted(Path(p) for p in glob.glob(pattern))
        if not paths:
            raise DataError(f"window {pattern!r}: no file matches")
    else:
        paths = [Path(pattern)]
        if not paths[0].is_file():
            raise DataError(f"window {pattern}: file not found")
    wrong = [str(p) for p in paths if p.suffix.lower() not in WINDOW_SUFFIXES]
    if wrong:
        raise DataError(f"window {pattern!r}: expected .csv or .parquet files, got {wrong}")
    return paths[-1:] if latest_only else paths


@dataclass(frozen=True)
class Window:
    table: pd.DataFrame
    pattern: str
    files: list[str]
    rows_read: int
    unexpected_columns: list[str]
    time_range: dict[str, float | str | None] | None

    def facts(self) -> dict[str, Any]:
        """What was read, for the evidence folder and the report (not the rows)."""
        return {
            "pattern": self.pattern,
            "files": self.files,
            "rows": len(self.table),
            "rows_read": self.rows_read,
            "time_range": self.time_range,
            "unexpected_columns": self.unexpected_columns,
        }


def read_window(
    files: list[Path],
    config: PipelineConfig,
    time_range: TimeRange | None = None,
    pattern: str | None = None,
) -> Window:
    """Read every file, drop PII columns at once, keep the model's columns, apply the range."""
    parts = []
    unexpected: set[str] = set()
    for path in files:
        raw = data.read_file(path)
        kept = [c for c in raw.columns if c in config.used_columns]
        unexpected |= {c for c in raw.columns if c not in kept and c not in config.pii_columns}
        parts.append(raw[kept])
        del raw  # PII never outlives this loop
    table = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    rows_read = len(table)
    where = ", ".join(str(f) for f in files)
    if time_range is not None:
        table = _in_range(table, config, time_range, where)
    if table.empty:
        extra = f" in time range {time_range.describe()}" if time_range else ""
        raise DataError(f"window {where}: no rows{extra}")
    return Window(
        table=table,
        pattern=pattern or where,
        files=[str(f) for f in files],
        rows_read=rows_read,
        unexpected_columns=sorted(unexpected),
        time_range=time_range.model_dump(mode="json") if time_range else None,
    )


def _in_range(table: pd.DataFrame, config: PipelineConfig, window: TimeRange, where: str):
    column = config.time_column
    if column is None:
        raise DataError("time_range given but the config declares no time_column")
    if column not in table.columns:
        raise DataError(f"window {where}: time_range needs column {column!r}, which is missing")
    schema = config.columns.get(column)
    time_format = schema.time_format if schema is not None else None
    return data.rows_between(table, column, window.start, window.end, time_format)


@dataclass(frozen=True)
class Finding:
    """Something about the window that is not drift but is worth a person's attention."""

    severity: str  # "warning" changes the status; "info" is reported only
    column: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


def check_window(window: Window, config: PipelineConfig) -> list[Finding]:
    """Schema findings; a missing feature is fatal because the champion cannot score rows."""
    table = window.table
    missing = [c for c in config.features.all if c not in table.columns]
    if missing:
        raise DataValidationError(
            ", ".join(window.files),
            [f"missing column {c!r}, which the model needs as a feature" for c in missing],
        )
    findings = [
        Finding("info", c, f"unexpected column {c!r} is not used by the model; ignored")
        for c in window.unexpected_columns
    ]
    for column in [*config.features.all, *_present(table, config)]:
        for message in data.column_violations(column, table[column], config):
            findings.append(Finding("warning", column, message))
    if config.target in table.columns:
        labelled = int(table[config.target].notna().sum())
        if 0 < labelled < len(table):
            findings.append(
                Finding(
                    "info",
                    config.target,
                    f"target {config.target!r} present for {labelled} of {len(table)} rows; "
                    "quality is measured on those rows only",
                )
            )
    return findings


def _present(table: pd.DataFrame, config: PipelineConfig) -> list[str]:
    extra = [config.target, config.time_column, *config.sensitive_columns]
    return [c for c in dict.fromkeys(extra) if c and c in table.columns and c != config.target]


def model_inputs(table: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Features typed as in training; values the schema calls invalid become missing."""
    return pd.DataFrame(
        {c: data.typed_valid(table[c], config, c) for c in config.features.all}, index=table.index
    )
