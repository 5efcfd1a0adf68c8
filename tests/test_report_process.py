"""Evidently's page built in the report process: the same page as in the monitoring process,
never lost when the child fails, hangs or cannot be given a column, and no child outliving
the process that started it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from modelcycle.monitoring import (
    ColumnKind,
    ColumnRule,
    Method,
    ReportJob,
    ReportProcess,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the report process is POSIX-only")

# Evidently gives every widget and plot a fresh random id; nothing else in a page varies.
_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def _job(rows: int = 400, seed: int = 3) -> ReportJob:
    rng = np.random.default_rng(seed)

    def frame(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "age": rng.normal(40 + shift, 10, rows),
                "hours": rng.integers(10, 60, rows).astype("float64"),
                "sector": rng.choice(["public", "private", "self"], rows),
            }
        )

    return ReportJob(
        reference=frame(0.0),
        current=frame(8.0),
        columns={
            "age": ColumnKind.numeric,
            "hours": ColumnKind.numeric,
            "sector": ColumnKind.categorical,
        },
        rules={"hours": ColumnRule(Method.ks, 0.01)},
        drift_share=0.5,
    )


_IMPORT_JOB = (
    f"import sys; sys.path[:0] = [{os.getcwd()!r}, {os.path.dirname(__file__)!r}]; "
    "from test_report_process import _job; "
    "from modelcycle.monitoring import ReportProcess, render_html; "
)


def _same_page(page: str) -> str:
    return _IDS.sub("<id>", page)


@pytest.fixture
def process():
    reports = ReportProcess(timeout=120)
    yield reports
    reports.stop()


def test_the_child_builds_the_page_this_process_would_build_page_after_page(monkeypatch):
    """Evidently orders some tables by set iteration, which follows the hash seed of the
    process: both sides get the same seed, the reference page a process of its own."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    process = ReportProcess(timeout=120)
    warnings: list[str] = []
    try:
        page = process.render(_job(), warn=warnings.append)
        assert warnings == []
        child = process.pid
        assert child is not None  # built there, and still running for the next page
        assert "hours" in process.render(_job(seed=1), warn=pytest.fail)
        assert process.pid == child  # one child, page after page
    finally:
        process.stop()
    here = subprocess.run(
        [sys.executable, "-c", _IMPORT_JOB + "print(render_html(_job()), end='')"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    assert "age" in page and "sector" in page
    assert _same_page(page) == _same_page(here)
    assert page != here  # the ids differ: the two pages were really built apart


def test_a_child_that_cannot_start_leaves_the_page_to_this_process():
    reports = ReportProcess(command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    warnings: list[str] = []
    try:
        page = reports.render(_job(), warn=warnings.append)
    finally:
        reports.stop()
    assert "age" in page
    assert len(warnings) == 1 and "exit code 3" in warnings[0], warnings


def test_a_hung_child_is_killed_and_the_page_built_here():
    reports = ReportProcess(
        timeout=1, command=[sys.executable, "-c", "import time; time.sleep(60)"]
    )
    warnings: list[str] = []
    started = time.monotonic()
    try:
        page = reports.render(_job(), warn=warnings.append)
    finally:
        reports.stop()
    assert "age" in page
    assert len(warnings) == 1 and "no answer in 1 s" in warnings[0], warnings
    assert time.monotonic() - started < 30  # not the child's 60 s
    assert reports.pid is None


def test_a_column_arrow_cannot_carry_is_reported_and_built_here(process):
    job = _job()
    mixed = job.current.assign(sector=[1 if i % 2 else "public" for i in range(len(job.current))])
    warnings: list[str] = []
    page = process.render(
        ReportJob(job.reference, mixed, job.columns, job.rules, job.drift_share),
        warn=warnings.append,
    )
    assert "sector" in page
    assert len(warnings) == 1 and "sector" in warnings[0], warnings


def test_the_monitoring_process_never_imports_evidently_and_its_child_dies_with_it():
    """In a fresh interpreter: the page comes back while Evidently stays out of the parent;
    the parent then ends without stopping the child (as a killed run would), and the child
    ends too."""
    script = _IMPORT_JOB + textwrap.dedent(
        """
        import os
        reports = ReportProcess(timeout=120)
        page = reports.render(_job(), warn=lambda m: print("WARN", m))
        print("PAGE", len(page) > 1000, "evidently" in sys.modules, reports.pid, flush=True)
        os._exit(0)  # no atexit, no stop(): the child must see its stdin close
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("PAGE"))
    _, built, imported, pid = line.split()
    assert (built, imported) == ("True", "False"), done.stdout
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(int(pid)):
        time.sleep(0.2)
    assert not _alive(int(pid)), f"report process {pid} outlived its parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
