"""The report process's side: `python -m modelcycle.monitoring._report_child`, started by
`ReportProcess` (see `_report_process`). Its own module, so that running it does not find
itself already imported by the package."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa

from modelcycle.monitoring._drift import ColumnKind, ColumnRule, Method
from modelcycle.monitoring._evidently import ReportJob, render_html


def _read_job(request: dict[str, Any]) -> ReportJob:
    def frame(path: str) -> pd.DataFrame:
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).read_all().to_pandas()

    return ReportJob(
        reference=frame(request["reference"]),
        current=frame(request["current"]),
        columns={c: ColumnKind(k) for c, k in request["columns"].items()},
        rules={
            c: ColumnRule(None if method is None else Method(method), threshold)
            for c, (method, threshold) in request["rules"].items()
        },
        drift_share=float(request["drift_share"]),
    )


def serve(requests: IO[str], replies: IO[str]) -> None:
    """The child's loop: one job per line until its stdin closes."""
    import evidently.presets  # noqa: F401  (the import is the slow part: do it before a job)

    for line in requests:
        try:
            request = json.loads(line)
            page = render_html(_read_job(request))
            Path(request["page"]).write_text(page, encoding="utf-8")
            reply: dict[str, Any] = {"ok": True}
        except Exception as exc:  # reported to the parent, which builds the page itself
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> None:
    """Replies go to the original stdout; anything else printed there (a library's print)
    goes to stderr instead, where it cannot break the protocol."""
    import warnings

    warnings.simplefilter("ignore")  # Evidently's warnings would only fill the error file
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
