"""Prediction ids: UUIDv7 (RFC 9562), so ids sort by time and never collide across workers.

48 bits of Unix milliseconds, then 74 random bits. Within one process, ids minted in the same
millisecond (or after the clock stepped back) continue from the previous id plus a random
step, so a worker's ids are strictly increasing; different workers and restarts differ by
their random bits (2^74 values per millisecond).
"""

from __future__ import annotations

import os
import re
import threading
import time

_RANDOM_BITS = 74
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1
_STEP_BITS = 32
ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class IdFactory:
    """Mints strictly increasing UUIDv7 strings; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_random = 0

    def new_ids(self, count: int) -> list[str]:
        with self._lock:
            return [self._next() for _ in range(count)]

    def _next(self) -> str:
        now = time.time_ns() // 1_000_000
        if now > self._last_ms:
            self._last_ms, self._last_random = now, _random(_RANDOM_BITS - 1)
        else:
            step = _random(_STEP_BITS) + 1
            self._last_random += step
            if self._last_random > _RANDOM_MASK:  # spent this millisecond: borrow the next one
                self._last_ms += 1
                self._last_random = _random(_RANDOM_BITS - 1)
        return _format(self._last_ms, self._last_random)


def _random(bits: int) -> int:
    return int.from_bytes(os.urandom((bits + 7) // 8), "big") & ((1 << bits) - 1)


def _format(ms: int, random: int) -> str:
    rand_a = random >> 62  # 12 bits
    rand_b = random & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def id_millis(prediction_id: str) -> int:
    """The Unix milliseconds an id was minted at."""
    return int(prediction_id.replace("-", "")[:12], 16)
