"""Helpers every layer uses and none owns: JSON-safe values, capped native thread pools."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits


def json_ready(value: Any) -> Any:
    """NaN and numpy scalars become JSON-safe values, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def thread_limit(limit: int | None) -> AbstractContextManager[Any]:
    """Cap native thread pools (OpenMP, BLAS) in this thread: OpenMP's limit is per thread, and
    small inputs run slower on more threads. None leaves the libraries' default."""
    return nullcontext() if limit is None else threadpool_limits(limits=limit)
