"""How long the data fingerprint takes on a million rows, against pandas' own row hashing.

The fingerprint runs on every training run (train and holdout) and used to be a timed unit
test (under 5 s), which failed on a busy shared machine; a ratio against a baseline measured
in the same process is what says whether it stays cheap.

    .venv/bin/python benchmarks/fingerprint.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from modelcycle.artifacts import fingerprint_frame


def _table(rows: int) -> pd.DataFrame:
    """20 float, 3 integer and 2 text columns: the shape of a wide tabular training set."""
    rng = np.random.default_rng(0)
    columns: dict[str, object] = {f"num{i}": rng.normal(size=rows) for i in range(20)}
    columns |= {f"int{i}": rng.integers(0, 100, size=rows) for i in range(3)}
    words = np.array([f"w{i}" for i in range(500)], dtype=object)
    columns |= {f"txt{i}": words[rng.integers(0, 500, size=rows)] for i in range(2)}
    return pd.DataFrame(columns)


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = _table(args.rows)
    baseline = _best(lambda: pd.util.hash_pandas_object(table, index=False).sum(), args.repeat)
    ours = _best(lambda: fingerprint_frame(table), args.repeat)
    print(f"rows={args.rows:,} columns={table.shape[1]} (best of {args.repeat})")
    print(f"pandas hash_pandas_object: {baseline:.3f} s")
    print(f"fingerprint_frame:         {ours:.3f} s")
    print(f"ratio fingerprint/pandas:  {ours / baseline:.2f}  (goal <= 3: hashing stays cheap)")


if __name__ == "__main__":
    main()
