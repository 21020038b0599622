"""Following a registry alias: the server answers with whichever version ``@champion`` names.

A background thread reads the alias every ``poll_seconds``. When it names a new version,
the thread loads that version and scores a small example with it (still in the background:
requests keep being answered by the old one), then swaps it in with one reference
assignment. A request's batch reads the reference once, so it is answered entirely by the
old or entirely by the new version; nothing is dropped or fails in between.

A version that does not load or fails the example is refused: logged with its reason,
reported by ``/health``, remembered (loaded again only after ``RETRY_REFUSED_S``; a new
version at once), and the old version keeps serving. A missing alias (no champion yet)
or an unreachable registry is not an error either: the server keeps what it has, or
answers 503 until a version loads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ferry.errors import FerryError

log = logging.getLogger("ferry.serving")

# A refused version is loaded again after this long: a download that failed on a network
# hiccup, or memory that was short while two models were loaded, must not refuse it for good
# (a truly broken version costs one failed load per interval).
RETRY_REFUSED_S = 300.0


@dataclass(frozen=True)
class Served:
    """One loaded version and where it came from (what ``/version`` answers)."""

    name: str
    version: str
    run_id: str
    alias: str | None
    model: Any
    loaded_at: float
    load_seconds: float  # loading and checking it took (the swap lags the alias by this)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id,
                "alias": self.alias, "loaded_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "load_seconds": round(self.load_seconds, 2)}


class Follower:
    """Serves ``registry``'s version ``ref``: an alias (followed) or a version number
    (fixed: loaded once). ``registry`` needs ``name``, ``version_of(ref)`` and
    ``pyfunc(version)`` (``ferry.tracking.Registry``)."""

    def __init__(self, registry: Any, ref: str, poll_seconds: float) -> None:
        self.registry, self.ref, self.poll_seconds = registry, ref, poll_seconds
        self.alias = None if ref.isdigit() else ref
        self.refused: dict[str, str] = {}  # version -> why it was not served
        self._refused_at: dict[str, float] = {}  # tried again after RETRY_REFUSED_S
        self.waiting = f"nothing loaded yet for {self.target}"  # why nothing serves
        self._served: Served | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said = ""  # the last registry problem logged (said once, not every poll)

    @property
    def target(self) -> str:
        return f"{self.registry.name}@{self.alias}" if self.alias else \
            f"{self.registry.name}/{self.ref}"

    def current(self) -> Served | None:
        """The version serving now (a plain read: swaps replace the reference whole)."""
        return self._served

    def poll(self) -> None:
        """Read the alias once; load and swap in a new version it names."""
        try:
            version, run_id = self.registry.version_of(self.ref)
        except FerryError as exc:  # no such alias (yet) or version
            self._note(f"{exc}", waiting=True)
            return
        except Exception as exc:  # the registry is unreachable: keep serving what we have
            self._note(f"cannot read {self.target} from the registry: "
                       f"{type(exc).__name__}: {str(exc)[:300]}", waiting=False)
            return
        self._said = ""
        served = self._served
        if (served and served.version == version) or (
                version in self.refused and
                time.monotonic() - self._refused_at[version] < RETRY_REFUSED_S):
            return
        self._load(version, run_id)

    def _load(self, version: str, run_id: str) -> None:
        began = time.monotonic()
        before = self._served
        log.info("%s: loading version %s%s", self.target, version,
                 f" (serving version {before.version} meanwhile)" if before else "")
        try:
            model = self.registry.pyfunc(version)
            model.unwrap_python_model().local_paths = False  # HTTP inputs: no server files
            smoke_test(model)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {_first_line(str(exc))}"
            self.refused[version] = reason
            self._refused_at[version] = time.monotonic()
            kept = f"still serving version {before.version}" if before else \
                "nothing to serve (503) until a version loads"
            self.waiting = f"{self.target} is version {version}, which was refused: {reason}"
            log.error("%s: refused version %s (%s); %s", self.target, version, reason, kept)
            return
        took = time.monotonic() - began
        with self._lock:
            self._served = Served(self.registry.name, version, run_id, self.alias, model,
                                  time.time(), took)
        log.info("%s: now serving version %s (loaded and checked in %.1f s)", self.target,
                 version, took)

    def _note(self, message: str, waiting: bool) -> None:
        """Remember why nothing serves; log a registry problem once (not every poll), and
        only once following (before that, the caller reports it as its error)."""
        if waiting and self._served is None:
            self.waiting = message
        if message != self._said and self._thread is not None:
            self._said = message
            kept = f"; still serving version {self._served.version}" if self._served else ""
            log.warning("%s%s", message, kept)

    def start(self) -> None:
        """Follow the alias in a daemon thread (a fixed version is never re-read)."""
        if self.alias is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="ferry-follow", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the follower must outlive anything one poll meets
                log.exception("%s: polling the registry failed", self.target)
            self._stop.wait(self.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def health(self) -> dict[str, Any]:
        served = self._served
        out: dict[str, Any] = {"status": "ok" if served else "waiting", "model": self.target,
                               "version": served.version if served else None}
        if served is None:
            out["message"] = self.waiting
        if self.refused:
            out["refused"] = dict(self.refused)
        return out


def smoke_test(model: Any) -> None:
    """Score a small example with probabilities: a version that cannot answer it, or
    answers with the wrong number of rows or non-finite probabilities, must not serve."""
    import numpy as np

    from ferry.serving.batcher import rows_of
    from ferry.tracking.protocol import smoke_inputs

    inputs, params = smoke_inputs(model)
    out = model.predict(inputs, params=params)
    if rows_of(out) != len(inputs):
        raise ValueError(f"the example of {len(inputs)} inputs got {rows_of(out)} answers")
    columns = [c for c in getattr(out, "columns", []) if "proba." in str(c)]
    if columns and not np.isfinite(out[columns].to_numpy(dtype=float)).all():
        raise ValueError("the example got non-finite probabilities")


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0][:300] if text else "no message"
