"""Evidently's HTML report in a process of its own, so a monitoring run does not wait for it.

Importing Evidently takes 3.3-3.5 s and building the report on its 20,000-row samples
another 1.4-1.7 s, all of it Python holding the GIL: in a thread it slowed the run's other
steps about as much as it saved. One long-lived child per modelcycle process imports
Evidently once, from when a monitoring run starts (the import overlaps reading the window),
and builds each page while the run measures quality and production on the other core.

Jobs go through a private temporary folder (the two samples as Arrow IPC files, never
pickle) and one JSON line each way on the child's stdin and stdout, so no write can block
on a full pipe. The child ends when its stdin closes, that is when the process that started
it ends, however it ends. Whatever goes wrong with the child (it cannot start, dies, hangs,
or a column Arrow cannot carry) the page is built here instead, with a warning: the report
is never lost to the optimisation.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from modelcycle.monitoring._evidently import ReportJob, render_html

logger = logging.getLogger(__name__)

# A page takes seconds; a child silent this long is taken for hung and replaced.
JOB_TIMEOUT_SECONDS = 600.0
_STOP_GRACE_SECONDS = 2.0


class ReportProcess:
    """The child that builds Evidently pages; `render` never fails for the child's sake."""

    def __init__(
        self, timeout: float = JOB_TIMEOUT_SECONDS, command: list[str] | None = None
    ) -> None:
        self.timeout = timeout
        self.command = command or [sys.executable, "-m", "modelcycle.monitoring._report_child"]
        self._child: subprocess.Popen[str] | None = None
        self._errors: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    @property
    def usable(self) -> bool:
        """Waiting on a pipe with a timeout needs `select` on pipes, which Windows lacks."""
        return os.name == "posix"

    def start(self) -> None:
        """Start the child if it is not running; it imports Evidently while the caller goes on."""
        if not self.usable or not self._lock.acquire(blocking=False):
            return  # a page is being built: the child runs already
        try:
            self._ensure_child()
        finally:
            self._lock.release()

    def render(self, job: ReportJob, warn: Callable[[str], Any] = logger.warning) -> str:
        """The page built by the child, or here (with `warn` saying why) when it cannot be."""
        if self.usable:
            try:
                with self._lock:
                    return self._render_in_child(job)
            except Exception as exc:  # whatever it was, the page is built here instead
                warn(f"HTML report built in the monitoring process instead: {exc}")
        return render_html(job)

    def stop(self) -> None:
        with self._lock:
            self._stop_child()

    # --- the child ---------------------------------------------------------------------

    def _ensure_child(self) -> subprocess.Popen[str]:
        if self._child is not None and self._child.poll() is None:
            return self._child
        self._stop_child()
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the child)
        self._child = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
            encoding="utf-8",
            close_fds=True,
            env=_child_environment(),
        )
        return self._child

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            # No job is in flight here and the child keeps nothing: waiting for it to read
            # the end of its input would hold a process that exits early (a monitoring run
            # refused on bad input) until the child's import of Evidently is done.
            child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def _render_in_child(self, job: ReportJob) -> str:
        folder = Path(tempfile.mkdtemp(prefix="modelcycle-report-"))
        try:
            request = _write_job(job, folder)
            child = self._ensure_child()
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write(json.dumps(request) + "\n")
                child.stdin.flush()
                reply = self._read_reply(child)
            except Exception:  # a child in an unknown state is not given another job
                self._stop_child()
                raise
            if not reply.get("ok"):
                raise ChildError(f"the report process failed: {reply.get('error')}")
            return Path(request["page"]).read_text(encoding="utf-8")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _read_reply(self, child: subprocess.Popen[str]) -> dict[str, Any]:
        assert child.stdout is not None
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                child.kill()
                raise ChildError(f"the report process gave no answer in {self.timeout:g} s")
            ready, _, _ = select.select([child.stdout], [], [], left)
            if ready:
                break
        line = child.stdout.readline()
        if not line:
            child.wait(_STOP_GRACE_SECONDS)
            raise ChildError(
                f"the report process ended (exit code {child.returncode}){self._last_error()}"
            )
        return json.loads(line)

    def _last_error(self) -> str:
        if self._errors is None:
            return ""
        self._errors.seek(0)
        lines = self._errors.read().decode("utf-8", "replace").strip().splitlines()
        return f": {lines[-1]}" if lines else ""


# The child works beside a monitoring run: one thread each for the numeric libraries, whose
# idle threads would otherwise spin against the run's (its quality step took 1.4 s instead
# of 1.15 s at a million rows).
_ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def _child_environment() -> dict[str, str]:
    """This environment, with this modelcycle first on the path (the child must run the same
    code as its parent, installed or not: the benchmarks run from a checkout) and one thread
    per numeric library."""
    import site

    import modelcycle

    environment = {**os.environ, **_ONE_THREAD}
    source = Path(modelcycle.__file__).resolve().parent.parent
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if source not in installed:  # a site-packages folder ahead of the standard library: never
        path = os.environ.get("PYTHONPATH")
        environment["PYTHONPATH"] = f"{source}{os.pathsep}{path}" if path else str(source)
    return environment


class ChildError(RuntimeError):
    """The report process did not answer as agreed."""


def _write_job(job: ReportJob, folder: Path) -> dict[str, Any]:
    """The job as files in `folder` (owner-only, from mkdtemp) and the request line naming
    them. Raises an Arrow error for a column Arrow cannot carry (mixed types)."""
    for side in ("reference", "current"):
        frame = getattr(job, side)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        path = str(folder / f"{side}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    return {
        "reference": str(folder / "reference.arrow"),
        "current": str(folder / "current.arrow"),
        "page": str(folder / "page.html"),
        "columns": {column: kind.value for column, kind in job.columns.items()},
        "rules": {
            column: [None if rule.method is None else rule.method.value, rule.threshold]
            for column, rule in job.rules.items()
        },
        "drift_share": job.drift_share,
    }


_SHARED: ReportProcess | None = None
_SHARED_LOCK = threading.Lock()


def report_process() -> ReportProcess:
    """This process's report child (created on first use, stopped at exit)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ReportProcess()
            atexit.register(_SHARED.stop)
        return _SHARED
