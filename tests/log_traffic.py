"""Traffic written to a real prediction log (the service's own writer), for monitoring tests.

Records have the shape the service logs (see `modelcycle/serving/_app.py`): the features and
the declared sensitive columns as inputs, the label and class probabilities as outputs, the
request's latency and the data-quality flags; times are chosen by the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelcycle.serving import PredictionLog

FEATURES = ["age", "prestg10", "childs", "occrecode", "wrkstat", "educcat", "maritalcat"]
_counter = itertools.count()


def record(
    model: str,
    version: int,
    inputs: dict[str, Any],
    label: Any,
    p_positive: float,
    at: datetime,
    *,
    latency_ms: float = 5.0,
    flags: Iterable[str] = (),
    request_id: str | None = None,
    classes: tuple[Any, Any] = (0, 1),
) -> dict[str, Any]:
    n = next(_counter)
    return {
        "id": f"id-{n:09d}",
        "time": at.isoformat(),
        "model": model,
        "version": version,
        "request_id": request_id or f"req-{n:09d}",
        "role": "champion",
        "inputs": inputs,
        "outputs": {
            "label": label,
            "probabilities": {
                str(classes[0]): 1.0 - p_positive,
                str(classes[1]): p_positive,
            },
        },
        "latency_ms": latency_ms,
        "flags": list(flags),
    }


def feedback(model: str, identifier: str, label: Any, at: datetime) -> dict[str, Any]:
    return {"id": identifier, "label": label, "time": at.isoformat(), "model": model}


def write(
    root: Path,
    predictions: list[dict[str, Any]],
    labels: list[dict[str, Any]] = (),  # type: ignore[assignment]
    worker: str = "test",
) -> None:
    """Through the service's writer: checked, framed, fsynced, sealed."""
    with PredictionLog(str(root), worker) as log:
        if predictions:
            log.submit_predictions(predictions).result(timeout=60)
        if labels:
            log.submit_feedback(list(labels)).result(timeout=60)


def inputs_of(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows as JSON inputs: NaN as null, numpy scalars as Python values."""
    rows = frame[columns].astype(object).where(frame[columns].notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in rows.to_dict(orient="records")
    ]


def spaced(start: datetime, count: int, seconds: float = 1.0) -> list[datetime]:
    return [start + timedelta(seconds=seconds * i) for i in range(count)]
