"""The versions a worker answers with, kept in step with the registry's champion alias.

Each worker polls the alias on its own (no coordination between workers is needed: they all
converge within one interval). A new champion is loaded and verified beside the old one and
swapped in by replacing one reference, so requests already holding the old version finish on
it. A version that fails verification is never swapped in; an unreachable registry leaves
the current version serving while the staleness gauge grows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from modelcycle.errors import ModelcycleError
from modelcycle.registry import ModelVersion, Registry, VersionStatus
from modelcycle.serving._metrics import Metrics
from modelcycle.serving._model import ServedModel, load_served
from modelcycle.serving._routing import Routing, refresh_routing
from modelcycle.serving._schema import RequestRefused

logger = logging.getLogger("modelcycle.serving")


@dataclass
class Slot:
    """One model's state in this worker."""

    name: str
    current: ServedModel | None = None
    last_poll_ok: float = field(default_factory=time.monotonic)
    refused: dict[int, str] = field(default_factory=dict)  # version -> sha256 that failed
    pinned: OrderedDict[int, ServedModel] = field(default_factory=OrderedDict)
    classes: dict[int, tuple[Any, ...] | None] = field(default_factory=dict)  # by version
    routing: Routing = field(default_factory=Routing)  # experiment and deprecation notices


class Catalog:
    """Champion per served model, plus a small cache of pinned versions."""

    def __init__(
        self,
        registry: Registry,
        names: list[str],
        metrics: Metrics,
        pii_policy: Literal["refuse", "drop"],
        pinned_cache: int,
        use_compiled: bool = True,
        fast_path: bool = True,
    ) -> None:
        self.registry = registry
        self.use_compiled = use_compiled
        self.metrics = metrics
        self.pii_policy: Literal["refuse", "drop"] = pii_policy
        self.pinned_cache = pinned_cache
        self.fast_path = fast_path
        self.fixed = bool(names)
        self.slots: dict[str, Slot] = {name: Slot(name) for name in names}
        self._pin_locks: dict[str, asyncio.Lock] = {}

    # -- requests ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return bool(self.slots) and all(s.current is not None for s in self.slots.values())

    def champion(self, name: str) -> ServedModel:
        slot = self._slot(name)
        if slot.current is None:
            raise RequestRefused(
                503, "not_ready", f"model {name!r} has no verified champion loaded yet"
            )
        return slot.current

    async def pinned(self, name: str, version: int) -> ServedModel:
        """A pinned version: the champion if it is that one, else loaded and verified once."""
        slot = self._slot(name)
        if slot.current is not None and slot.current.version == version:
            return slot.current
        cached = slot.pinned.get(version)
        if cached is not None:
            slot.pinned.move_to_end(version)
            return cached
        lock = self._pin_locks.setdefault(name, asyncio.Lock())  # one load at a time per model
        async with lock:
            cached = slot.pinned.get(version)
            if cached is not None:
                return cached
            record = await asyncio.to_thread(self._pinned_record, name, version)
            try:
                served = await asyncio.to_thread(self._load, record)
            except ModelcycleError as exc:
                self.metrics.verification_failures.labels(name, str(version)).inc()
                logger.error("%s v%d failed verification; not loaded: %s", name, version, exc)
                raise RequestRefused(
                    503,
                    "verification_failed",
                    f"model {name!r} version {version} failed verification and is not served",
                ) from None
            if self.pinned_cache:
                slot.pinned[version] = served
                while len(slot.pinned) > self.pinned_cache:
                    slot.pinned.popitem(last=False)
            return served

    async def classes_of(self, name: str, version: int) -> tuple[Any, ...] | None:
        """The classes of the version that answered a prediction (None: a regressor), which
        is what feedback on it is checked against: the champion may have moved on to a
        version with other classes. Any registered version counts, retired ones included;
        one not loaded here is loaded and verified once, and only its classes are kept.
        Raises ModelcycleError when the version cannot be read."""
        slot = self._slot(name)
        for served in (slot.current, *slot.pinned.values()):
            if served is not None and served.version == version:
                return served.classes
        if version not in slot.classes:
            try:
                record = await asyncio.to_thread(self.registry.get_version, name, version)
            finally:
                self._fresh_connections()
            served = await asyncio.to_thread(
                load_served, record, self.pii_policy, self.use_compiled, False
            )
            slot.classes[version] = served.classes
        return slot.classes[version]

    def _load(self, record: ModelVersion) -> ServedModel:
        served = load_served(record, self.pii_policy, self.use_compiled, self.fast_path)
        version = (record.model_name, str(record.version))
        self.metrics.fast_path.labels(*version).set(1 if served.fast is not None else 0)
        return served

    def _pinned_record(self, name: str, version: int) -> ModelVersion:
        try:
            record = self.registry.get_version(name, version)
        except ModelcycleError:
            raise RequestRefused(
                404, "not_found", f"model {name!r} has no version {version}"
            ) from None
        finally:
            self._fresh_connections()
        _check_servable(record)
        return record

    def routing(self, name: str) -> Routing:
        return self._slot(name).routing

    def _slot(self, name: str) -> Slot:
        slot = self.slots.get(name)
        if slot is None:
            served = ", ".join(sorted(self.slots)) or "none"
            raise RequestRefused(
                404, "not_found", f"no model named {name!r} is served here (served: {served})"
            )
        return slot

    # -- following the registry -------------------------------------------------------------

    def discover(self) -> None:
        """Serve every model with a champion, when no names were given."""
        if self.fixed:
            return
        try:
            for model in self.registry.list_models():
                if model.name not in self.slots and self.registry.champion(model.name):
                    self.slots[model.name] = Slot(model.name)
        finally:
            self._fresh_connections()

    def poll(self) -> None:
        """One pass over every served model; never raises (the service keeps answering)."""
        try:
            self.discover()
        except Exception as exc:
            logger.warning("registry unreachable while listing models: %s", _one_line(exc))
        for slot in list(self.slots.values()):
            self._poll_slot(slot)
            refresh_routing(self, slot)

    def _poll_slot(self, slot: Slot) -> None:
        name = slot.name
        try:
            record = self.registry.champion(name)
            pinned = {v: self.registry.get_version(name, v) for v in list(slot.pinned)}
        except Exception as exc:
            age = time.monotonic() - slot.last_poll_ok
            self.metrics.staleness.labels(name).set(age)
            logger.warning(
                "registry unreachable for %s (keeping v%s, last read %.0f s ago): %s",
                name,
                slot.current.version if slot.current else "-",
                age,
                _one_line(exc),
            )
            return
        finally:
            self._fresh_connections()
        slot.last_poll_ok = time.monotonic()
        self.metrics.staleness.labels(name).set(0)
        for version, pin in pinned.items():
            if (
                pin.status is VersionStatus.RETIRED
                or pin.model_sha256 != slot.pinned[version].record.model_sha256
            ):
                slot.pinned.pop(version, None)
            else:
                slot.pinned[version] = _with_record(slot.pinned[version], pin)
        if record is None:
            if slot.current is not None:
                logger.warning("%s has no champion any more; answering 503", name)
                self.metrics.loaded.labels(name, str(slot.current.version)).set(0)
                slot.current = None
            return
        current = slot.current
        if current is not None and (current.version, current.record.model_sha256) == (
            record.version,
            record.model_sha256,
        ):
            slot.current = _with_record(current, record)
            return
        self._swap(slot, record)

    def _swap(self, slot: Slot, record: ModelVersion) -> None:
        name, version = slot.name, record.version
        try:
            served = self._load(record)
        except Exception as exc:
            self.metrics.verification_failures.labels(name, str(version)).inc()
            if slot.refused.get(version) != record.model_sha256:
                logger.error(
                    "%s v%d failed verification and is not loaded; still serving %s: %s",
                    name,
                    version,
                    f"v{slot.current.version}" if slot.current else "nothing",
                    _one_line(exc),
                )
            slot.refused[version] = record.model_sha256
            return
        slot.refused.pop(version, None)
        old = slot.current
        slot.current = served  # one reference: requests holding `old` finish on it
        if old is not None:
            self.metrics.loaded.labels(name, str(old.version)).set(0)
        self.metrics.loaded.labels(name, str(version)).set(1)
        self.metrics.reloads.labels(name, str(version)).inc()
        logger.info(
            "%s: now answering with v%d%s",
            name,
            version,
            f" (was v{old.version})" if old else "",
        )

    def _fresh_connections(self) -> None:
        """Drop pooled connections after each pass, so an unreachable database is noticed
        (a pooled SQLite connection keeps reading a file that was replaced)."""
        self.registry.engine.dispose()


def _check_servable(record: ModelVersion) -> None:
    if record.status is VersionStatus.RETIRED:
        raise RequestRefused(
            410,
            "gone",
            f"model {record.model_name!r} version {record.version} is retired and answers no "
            "more predictions",
        )
    if record.status is VersionStatus.REJECTED:
        raise RequestRefused(
            409,
            "rejected",
            f"model {record.model_name!r} version {record.version} was rejected by the gate "
            "and is not served",
        )


def _with_record(served: ServedModel, record: ModelVersion) -> ServedModel:
    """Keep the loaded pipeline; refresh the registry facts (status, aliases)."""
    if served.record == record:
        return served
    from dataclasses import replace

    return replace(served, record=record)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
