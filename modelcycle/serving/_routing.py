"""Experiments and deprecations inside a worker: which version answers a request (canary),
which one scores it in the background (shadow), and what a pinned route announces.

Each worker reads the running experiment and the deprecation notices on the same poll that
follows the champion alias, so they converge within one interval like the champion does. A
challenger is loaded and verified the way a champion is; one that fails verification is never
used, and the champion keeps all traffic.

Shadow scoring never touches the response path: the request hands its decoded body to a
queue bounded in rows (a put that cannot wait) and returns; one consumer task parses it with the
challenger's own schema, predicts in a thread of its own and writes the rows to the log with
role `shadow`, each id the champion row's id plus `.shadow`, so feedback given for the
champion's answer scores both versions. When the queue is full the request is not shadowed
(counted as `shadow_dropped`), never delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelcycle.registry import Deprecation, Experiment, ExperimentMode, Rollouts
from modelcycle.serving._batcher import capped_executor, predicts_inline, stop_worker
from modelcycle.serving._model import ServedModel, load_served
from modelcycle.serving._schema import RequestRefused

if TYPE_CHECKING:
    from modelcycle.serving._catalog import Catalog, Slot

logger = logging.getLogger("modelcycle.serving")

SHADOW_SUFFIX = ".shadow"
# Rows waiting for the shadow at most; beyond, requests are answered but not shadowed. Bounds
# the memory held by queued bodies (up to max_rows_per_request rows each) whatever the load.
SHADOW_MAX_ROWS = 20_000
ERROR_FLAG = "error"


@dataclass(frozen=True)
class Routing:
    """One model's experiment and notices as this worker last read them."""

    experiment: Experiment | None = None
    challenger: ServedModel | None = None
    deprecations: dict[int, Deprecation] = field(default_factory=dict)

    @property
    def canary(self) -> ServedModel | None:
        e = self.experiment
        if e is not None and e.mode is ExperimentMode.CANARY and self.challenger is not None:
            return self.challenger
        return None

    @property
    def shadow(self) -> ServedModel | None:
        e = self.experiment
        if e is not None and e.mode is ExperimentMode.SHADOW and self.challenger is not None:
            return self.challenger
        return None


# -- following the registry ------------------------------------------------------------------


def refresh_routing(catalog: Catalog, slot: Slot) -> None:
    """Read the running experiment and notices; load a new challenger beside the champion.

    Never raises: an unreachable registry keeps the routing this worker had, and a challenger
    that fails verification is dropped (the champion answers everything).
    """
    rollouts = _rollouts(catalog)
    try:
        experiment = rollouts.running(slot.name)
        notices = rollouts.deprecations(slot.name)
    except Exception as exc:
        logger.warning("experiments of %s unreadable; keeping the last routing: %s", slot.name, exc)
        return
    finally:
        rollouts.engine.dispose()
    current = slot.routing
    challenger = current.challenger
    champion = slot.current
    if experiment is None or champion is None or experiment.champion != champion.version:
        # No experiment, or one judged against a champion that no longer serves here.
        experiment, challenger = None, None
    elif challenger is None or challenger.version != experiment.challenger:
        challenger = _load_challenger(catalog, slot.name, experiment)
        if challenger is None:
            experiment = None
    slot.routing = Routing(experiment, challenger, notices)


def _rollouts(catalog: Catalog) -> Rollouts:
    cached = getattr(catalog, "_rollouts", None)
    if cached is None:
        cached = Rollouts(catalog.registry.url)
        catalog._rollouts = cached  # type: ignore[attr-defined]
    return cached


def _load_challenger(catalog: Catalog, name: str, experiment: Experiment) -> ServedModel | None:
    try:
        record = catalog.registry.get_version(name, experiment.challenger)
        served = load_served(record, catalog.pii_policy, catalog.use_compiled, catalog.fast_path)
    except Exception as exc:
        catalog.metrics.verification_failures.labels(name, str(experiment.challenger)).inc()
        logger.error(
            "%s v%d (%s challenger) failed verification; the champion keeps all traffic: %s",
            name,
            experiment.challenger,
            experiment.mode.value,
            exc,
        )
        return None
    logger.info(
        "%s: v%d loaded as %s challenger (experiment %d)",
        name,
        served.version,
        experiment.mode.value,
        experiment.id,
    )
    return served


# -- canary ----------------------------------------------------------------------------------


def canary_bucket(experiment_id: int, key: str) -> float:
    """A number in [0, 1) fixed by the experiment and the key: the same entity meets the same
    version on every request and in every worker (SHA-256, not Python's salted hash)."""
    digest = hashlib.sha256(f"{experiment_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def routing_key(payload: Any, entity_key: str | None, request_id: str) -> str:
    """The entity key's value in the request's first row, else the request id."""
    if entity_key and isinstance(payload, dict):
        value = None
        rows = payload.get("rows")
        columns = payload.get("columns")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            value = rows[0].get(entity_key)
        elif isinstance(columns, dict) and isinstance(columns.get(entity_key), list):
            column = columns[entity_key]
            value = column[0] if column else None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return f"{entity_key}={value}"
    return f"request={request_id}"


def choose_canary(routing: Routing, payload: Any, request_id: str) -> ServedModel | None:
    """The challenger when this request falls in the canary's share, else None."""
    challenger = routing.canary
    if challenger is None or routing.experiment is None:
        return None
    key = routing_key(payload, challenger.config.experiment.entity_key, request_id)
    return (
        challenger if canary_bucket(routing.experiment.id, key) < routing.experiment.share else None
    )


# -- deprecation -----------------------------------------------------------------------------


def deprecation_headers(notice: Deprecation | None, now: datetime | None = None) -> dict[str, str]:
    """RFC 9745 `Deprecation` (a structured-field date, @unix seconds), RFC 8594 `Sunset` (an
    HTTP-date) and a `Link` to the successor's pinned route; 410 once the sunset has passed."""
    if notice is None:
        return {}
    now = now or datetime.now(UTC)
    name, version = notice.model_name, notice.version
    successor = (
        f"; use version {notice.successor} (/v1/models/{name}/versions/{notice.successor}/predict)"
        if notice.successor
        else ""
    )
    if now >= notice.sunset:
        raise RequestRefused(
            410,
            "gone",
            f"model {name!r} version {version} reached its sunset on "
            f"{notice.sunset.isoformat()} and answers no more predictions{successor}",
        )
    headers = {
        "deprecation": f"@{int(notice.announced_at.timestamp())}",
        "sunset": email.utils.format_datetime(notice.sunset.astimezone(UTC), usegmt=True),
    }
    if notice.successor:
        headers["link"] = (
            f'</v1/models/{name}/versions/{notice.successor}/predict>; rel="successor-version"'
        )
    return headers


# -- shadow ----------------------------------------------------------------------------------


@dataclass
class _ShadowItem:
    model: ServedModel
    payload: Any
    ids: list[str]
    request_id: str
    time: str


class ShadowScorer:
    """A bounded queue of answered requests, scored by the shadow version in the background."""

    def __init__(self, service: Any, max_rows: int = SHADOW_MAX_ROWS) -> None:
        self.service = service
        self.max_rows = max_rows
        self._rows = 0  # rows queued and not yet scored: what bounds the memory held
        self._queue: asyncio.Queue[_ShadowItem] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.dropped = 0
        self.scored = 0

    def start(self) -> None:
        self._executor = capped_executor("shadow", self.service.settings.threads)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await stop_worker(self._task, self._executor)

    def offer(self, model: ServedModel, payload: Any, ids: list[str], request_id: str, time: str):
        """Queue one answered request; never waits (full queue: the request is not shadowed)."""
        if self._rows + len(ids) > self.max_rows:
            self.dropped += 1
            self.service.metrics.errors.labels(model.name, "shadow_dropped").inc()
            return
        self._rows += len(ids)
        self._queue.put_nowait(_ShadowItem(model, payload, ids, request_id, time))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued request was scored (tests, orderly shutdown)."""
        # asyncio.Queue has no public `unfinished_tasks`: reading it raised AttributeError, so
        # every in-process stop of the service failed; join() is the public way to wait.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._score(item)
            except Exception:
                logger.exception(
                    "shadow scoring failed for %s v%d", item.model.name, item.model.version
                )
            finally:
                self._rows -= len(item.ids)
                self._queue.task_done()

    def _predict(self, item: _ShadowItem) -> tuple[Any, Any]:
        """Parse and predict, in the shadow's thread (on the event loop only for a small batch
        on the numpy trees, as the champion's batcher does, so their latencies compare)."""
        batch = item.model.schema.parse(item.payload, self.service.settings.max_rows_per_request)
        if batch.size != len(item.ids):
            raise ValueError("the shadow's schema accepted a different number of rows")
        return batch, item.model.predict([batch])

    async def _score(self, item: _ShadowItem) -> None:
        model, service = item.model, self.service
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            if predicts_inline(model, len(item.ids)):  # as the champion's batcher does
                batch, predictions = self._predict(item)
            else:
                batch, predictions = await loop.run_in_executor(self._executor, self._predict, item)
        except Exception as exc:
            logger.warning(
                "shadow %s v%d could not score a request: %s", model.name, model.version, exc
            )
            records = [
                _record(model, f"{i}{SHADOW_SUFFIX}", item, {}, {}, 0.0, [ERROR_FLAG])
                for i in item.ids
            ]
        else:
            latency_ms = (time.perf_counter() - started) * 1000
            records = []
            for row, champion_id in enumerate(item.ids):
                outputs: dict[str, Any] = {"label": predictions.labels[row]}
                if predictions.probabilities is not None:
                    outputs["probabilities"] = predictions.probabilities[row]
                records.append(
                    _record(
                        model,
                        f"{champion_id}{SHADOW_SUFFIX}",
                        item,
                        batch.inputs(row),
                        outputs,
                        latency_ms,
                        batch.flags[row],
                    )
                )
        future = service.log.submit_predictions(records)
        await asyncio.wrap_future(future)
        self.scored += len(records)


def _record(
    model: ServedModel,
    record_id: str,
    item: _ShadowItem,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    latency_ms: float,
    flags: list[str],
) -> dict[str, Any]:
    return {
        "id": record_id,
        "time": item.time,
        "model": model.name,
        "version": model.version,
        "request_id": item.request_id,
        "role": "shadow",
        "inputs": inputs,
        "outputs": outputs,
        "latency_ms": latency_ms,
        "flags": flags,
    }


async def predict_canary(
    service: Any, champion: ServedModel, challenger: ServedModel, payload: Any, request_id: str
) -> tuple[ServedModel, Any, Any, str]:
    """Answer with the challenger; if it cannot (its schema refuses what the champion accepts,
    or it fails), the champion answers and the failure is logged as a `canary` row flagged
    `error`, which the experiment's error-rate guardrail counts."""
    limit = service.settings.max_rows_per_request
    try:
        batch = challenger.schema.parse(payload, limit)
        return challenger, batch, await service.batcher.predict(challenger, batch), "canary"
    except Exception as exc:
        failure = exc
    batch = champion.schema.parse(payload, limit)  # the champion's refusal is the answer
    logger.warning(
        "canary %s v%d failed a request; the champion answered: %s",
        challenger.name,
        challenger.version,
        failure,
    )
    now = datetime.now(UTC).isoformat()
    item = _ShadowItem(challenger, None, [], request_id, now)
    errors = [
        {**_record(challenger, i, item, {}, {}, 0.0, [ERROR_FLAG]), "role": "canary"}
        for i in service.ids.new_ids(batch.size)
    ]
    await asyncio.wrap_future(service.log.submit_predictions(errors))
    return champion, batch, await service.batcher.predict(champion, batch), "champion"
