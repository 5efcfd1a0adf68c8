"""Adaptive micro-batching: rows of concurrent requests predicted together, off the event loop.

One consumer task per worker takes every request already queued (up to `max_batch_rows`),
waits up to `max_wait_ms` only while other requests are still being read (so a lone request
never waits), groups them by the version they were routed to, builds one frame per group and
predicts it in the worker's single prediction thread. NOTES-serving.md measured the demo
pipeline at 5.1 ms for one row and 14.7 ms for 1,000: the per-call overhead, not the trees, is
the cost, so concurrent requests share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from modelcycle.serving._fast import TREE_ROWS_MAX
from modelcycle.serving._metrics import Metrics
from modelcycle.serving._model import Predictions, ServedModel
from modelcycle.serving._schema import Batch

logger = logging.getLogger("modelcycle.serving")


def _cap_threads(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def capped_executor(name: str, threads: int) -> ThreadPoolExecutor:
    """The one thread a queue's predictions run in. OpenMP's limit is per thread, so it is set
    once, in that thread, when it starts."""
    return ThreadPoolExecutor(
        max_workers=1, thread_name_prefix=name, initializer=_cap_threads, initargs=(threads,)
    )


async def stop_worker(task: asyncio.Task[None] | None, executor: ThreadPoolExecutor | None) -> None:
    """Cancel a queue's draining task, then let its thread finish what it holds."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if executor is not None:
        executor.shutdown(wait=True)


@dataclass
class _Item:
    model: ServedModel
    batch: Batch
    future: asyncio.Future[Predictions]
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Queue of parsed requests, drained by one task into one prediction thread."""

    def __init__(
        self,
        max_batch_rows: int,
        max_wait_ms: float,
        threads: int,
        metrics: Metrics,
    ) -> None:
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait_ms / 1000
        self.threads = threads
        self.metrics = metrics
        self.in_flight = 0  # requests being read or parsed, counted by the app
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._executor = capped_executor("predict", self.threads)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await stop_worker(self._task, self._executor)

    async def predict(self, model: ServedModel, batch: Batch) -> Predictions:
        future: asyncio.Future[Predictions] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(model, batch, future))
        return await future

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            try:
                await self._predict(items)
            except Exception as exc:  # one bad group must not stop the consumer
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)

    async def _collect(self) -> list[_Item]:
        items = [await self._queue.get()]
        rows = items[0].batch.size
        deadline = time.perf_counter() + self.max_wait
        while rows < self.max_batch_rows:
            if not self._queue.empty():
                item = self._queue.get_nowait()
                items.append(item)
                rows += item.batch.size
                continue
            # Wait only for requests that are already arriving; a lone request goes at once.
            remaining = deadline - time.perf_counter()
            if self.in_flight <= 0 or remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            items.append(item)
            rows += item.batch.size
        return items

    async def _predict(self, items: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        groups: dict[int, list[_Item]] = {}
        for item in items:
            groups.setdefault(id(item.model), []).append(item)
        for group in groups.values():
            model = group[0].model
            batches = [item.batch for item in group]
            total = sum(b.size for b in batches)
            try:
                if predicts_inline(model, total):
                    result = model.predict(batches)
                else:
                    result = await loop.run_in_executor(self._executor, model.predict, batches)
            except Exception as exc:
                logger.exception("prediction failed for %s v%d", model.name, model.version)
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            self.metrics.batch_rows.labels(model.name, str(model.version)).observe(total)
            _split(group, result)


def predicts_inline(model: ServedModel, rows: int) -> bool:
    """Small batches on the numpy trees are predicted on the event loop itself: they take
    0.1-1 ms, less than handing them to the prediction thread and back (two wake-ups, and
    two waits for the GIL while the loop is busy). Anything that can take longer (the
    pipeline, or an estimator's own predict) stays off the loop."""
    fast = model.fast
    return fast is not None and fast.trees is not None and rows <= TREE_ROWS_MAX


def _split(group: list[_Item], result: Predictions) -> None:
    start = 0
    for item in group:
        end = start + item.batch.size
        probabilities = None if result.probabilities is None else result.probabilities[start:end]
        part = Predictions(result.labels[start:end], probabilities)
        if not item.future.done():  # a client that went away cancelled its future
            item.future.set_result(part)
        start = end
