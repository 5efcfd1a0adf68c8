"""Helpers every layer uses and none owns: JSON-safe values, capped native thread pools."""

from __future__ import annotations

import dataclasses
import math
from contextlib import AbstractContextManager, nullcontext
from datetime import date
from enum import Enum
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits


def json_ready(value: Any) -> Any:
    """What `json.dumps` can write and a reader gets back unchanged, recursively: NaN and
    infinities become None, numpy scalars Python ones, enums their value, dates ISO 8601, and a
    dataclass the mapping of its fields (in declaration order, so a record's keys keep theirs).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Enum):
        return json_ready(value.value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json_dict(record: Any) -> dict[str, Any]:
    """A dataclass record as the JSON object the CLI prints and run folders store, so records
    need no hand-written field lists that drift from their fields."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"expected a dataclass instance, got {type(record).__name__}")
    return json_ready(record)


def thread_limit(limit: int | None) -> AbstractContextManager[Any]:
    """Cap native thread pools (OpenMP, BLAS) in this thread: OpenMP's limit is per thread, and
    small inputs run slower on more threads. None leaves the libraries' default."""
    return nullcontext() if limit is None else threadpool_limits(limits=limit)


def keyed_hash(key: bytes, column: str, value: object) -> str:
    """HMAC-SHA256 of a subject key's value, bound to its column: the same person gets the
    same pseudonym in every record, and nobody without the key can recover or test a value."""
    import hashlib
    import hmac

    message = f"{column}\x00{value}".encode()
    return "hmac-sha256:" + hmac.new(key, message, hashlib.sha256).hexdigest()
