"""The one JSON encoder records share: what `json_ready` makes of dataclasses, enums and
dates, and that a record's keys keep their declaration order (run files and `--json` output
are read by people and diffed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum

import numpy as np
import pytest

from modelcycle.utils import json_ready, to_json_dict


class Colour(StrEnum):
    red = "red"


@dataclass(frozen=True)
class Inner:
    at: datetime
    score: float


@dataclass(frozen=True)
class Outer:
    zeta: str
    colour: Colour
    inner: Inner
    items: tuple[Inner, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


def test_records_become_json_with_their_field_order() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = Outer(
        "z",
        Colour.red,
        Inner(at, np.float64(0.5)),
        (Inner(at, float("nan")),),
        {"d": date(2026, 1, 2)},
    )
    got = to_json_dict(record)
    assert got == {
        "zeta": "z",
        "colour": "red",
        "inner": {"at": "2026-01-02T03:04:05+00:00", "score": 0.5},
        "items": [{"at": "2026-01-02T03:04:05+00:00", "score": None}],
        "extra": {"d": "2026-01-02"},
    }
    assert list(got) == ["zeta", "colour", "inner", "items", "extra"]
    assert type(got["colour"]) is str and type(got["inner"]["score"]) is float
    json.dumps(got, allow_nan=False)


def test_plain_values_are_unchanged() -> None:
    value = {"a": [1, "b", True, None], 2: (0.25,)}
    assert json_ready(value) == {"a": [1, "b", True, None], "2": [0.25]}


def test_to_json_dict_refuses_what_is_not_a_record() -> None:
    with pytest.raises(TypeError, match="dataclass instance"):
        to_json_dict({"a": 1})
    with pytest.raises(TypeError, match="dataclass instance"):
        to_json_dict(Outer)
