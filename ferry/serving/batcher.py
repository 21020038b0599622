"""Dynamic batching: concurrent requests scored by one ``predict`` call instead of one each.

On a CPU, one forward pass over 32 short texts costs a few times one over a single text,
not 32 times: the per-call overhead (schema checks, tokenizer, Python, kernel launches) is
paid once and the matrix products get wide enough to use the cores. So requests queue up,
and a single worker takes them in batches: everything queued, up to ``max_batch`` inputs,
and (see ``_collect``) for at most ``max_wait_ms`` more while the batch is smaller than the
previous one; it runs one predict in a thread (torch releases the GIL; the event loop keeps
accepting requests) and hands each request its own rows back.

Requests are batched only with requests of the same params and input shape (one predict
has one ``params``); a request is never split. If a batch fails, each of its requests is
scored alone, so one bad input fails only its own request. The model is read once per
batch (``current()``): when the follower swaps versions mid-stream, a batch runs on the
version it started with, and the next one on the new version; no request is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ferry.serving")


@dataclass
class Job:
    """One request: its inputs, params, row count and the future its answer goes to."""

    data: Any
    params: dict[str, Any] | None
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return rows_of(self.data)

    @property
    def key(self) -> str:
        """Requests with the same key can share a predict: same params, same input kind."""
        return json.dumps([self.params, kind_of(self.data)], sort_keys=True, default=str)


@dataclass
class Stats:
    requests: int = 0
    batches: int = 0
    largest: int = 0  # the most inputs one predict scored

    def as_dict(self) -> dict[str, float]:
        return {"requests": self.requests, "batches": self.batches,
                "largest_batch": self.largest,
                "mean_batch": round(self.requests / self.batches, 2) if self.batches else 0.0}


class Batcher:
    """The queue and its one worker. ``current()`` returns the model to use now (any object
    with ``predict(data, params=...)``); ``submit`` returns ``(model, rows)``: the model that
    answered and this request's slice of its output."""

    def __init__(self, current: Callable[[], Any], max_batch: int, max_wait_ms: float,
                 predict: Callable[[Any, Any, dict | None], Any] | None = None) -> None:
        self.current, self.max_batch, self.max_wait = current, max_batch, max_wait_ms / 1000
        self.predict = predict or (lambda model, data, params: model.predict(data,
                                                                             params=params))
        self.stats = Stats()
        self._queue: asyncio.Queue[Job] | None = None
        self._held: Job | None = None  # the job that did not fit the previous batch
        self._last = 0  # requests in the previous batch: 1 means nobody is waiting alongside
        self._worker: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ferry-predict")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="ferry-batcher")

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, data: Any, params: dict[str, Any] | None) -> tuple[Any, Any]:
        assert self._queue is not None, "Batcher.start() first"
        job = Job(data, params, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            model = self.current()  # one version for the whole batch, even if a swap lands
            groups: dict[str, list[Job]] = {}
            for job in batch:
                groups.setdefault(job.key, []).append(job)
            for jobs in groups.values():
                try:
                    await self._score(model, jobs)
                except Exception as exc:  # never let the worker die
                    log.exception("batch of %d requests failed unexpectedly", len(jobs))
                    for job in jobs:
                        _settle(job, exc=exc)

    async def _collect(self) -> list[Job]:
        """The next batch: what is queued (up to ``max_batch`` inputs), and while it holds
        fewer requests than the previous batch, whatever arrives within ``max_wait`` of
        the worker starting to collect it.

        Why "fewer than the previous batch": the clients answered by that batch are
        probably sending again, so a short wait fills this one; without it, one straggler
        that arrived during the last predict would go alone and the batches would
        alternate between 31 requests and 1. After a batch of one (a lone client) nothing
        is expected, so a single client never waits."""
        assert self._queue is not None
        first = self._held or await self._queue.get()
        self._held = None
        batch, size = [first], first.rows
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if len(batch) >= self._last or left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if size + job.rows > self.max_batch:
                self._held = job
                break
            batch.append(job)
            size += job.rows
        self._last = len(batch)
        return batch

    async def _score(self, model: Any, jobs: list[Job]) -> None:
        """One predict for ``jobs`` (in the predict thread); on failure, each job alone."""
        loop = asyncio.get_running_loop()
        jobs = [j for j in jobs if not j.future.done()]  # a client that went away
        if not jobs:
            return
        data = jobs[0].data if len(jobs) == 1 else concat([j.data for j in jobs])
        try:
            out = await loop.run_in_executor(self._pool, self.predict, model, data,
                                             jobs[0].params)
        except Exception as exc:  # the model refused the inputs
            if len(jobs) == 1:
                _settle(jobs[0], exc=exc)
                return
            out = None
        if len(jobs) > 1 and (out is None or rows_of(out) != sum(j.rows for j in jobs)):
            for job in jobs:  # find the request at fault; the others still get answers
                await self._score(model, [job])
            return
        self._count(jobs)
        if len(jobs) == 1:
            _settle(jobs[0], (model, out))
            return
        start = 0
        for job in jobs:
            _settle(job, (model, take(out, start, start + job.rows)))
            start += job.rows

    def _count(self, jobs: list[Job]) -> None:
        size = sum(j.rows for j in jobs)
        self.stats.requests += len(jobs)
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, size)


def _settle(job: Job, result: Any = None, exc: BaseException | None = None) -> None:
    if job.future.done():
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


def rows_of(data: Any) -> int:
    """How many inputs a parsed request holds (a dict of named inputs or a scalar: one)."""
    if hasattr(data, "shape"):
        return int(data.shape[0]) if len(data.shape) else 1
    return len(data) if isinstance(data, list) else 1


def kind_of(data: Any) -> Any:
    """What must match for two requests' inputs to be stacked: a frame's columns, an
    array's trailing shape and dtype kind; anything else (named inputs, scalars) never
    stacks (its id is unique)."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return ["frame", [str(c) for c in data.columns], [str(t) for t in data.dtypes]]
    if isinstance(data, np.ndarray) and data.ndim >= 1:
        return ["array", list(data.shape[1:]), data.dtype.kind]
    if isinstance(data, list):
        return ["list"]
    return ["single", id(data)]


def concat(parts: list[Any]) -> Any:
    """Requests of one kind (see ``kind_of``) as one input, rows in order."""
    import numpy as np
    import pandas as pd

    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [item for part in parts for item in part]


def take(out: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a predict's output (a list, array, Series or DataFrame)."""
    if hasattr(out, "iloc"):
        return out.iloc[start:stop].reset_index(drop=True)
    return out[start:stop]
