"""The gate's paired bootstrap: vectorised resampling against a loop of scikit-learn calls.

Both compute the same (challenger - champion) ROC AUC differences on the same resamples; the
script checks they agree, then prints the times and the ratio:

    .venv/bin/python benchmarks/bootstrap.py                       # 5,569 rows (demo holdout)
    .venv/bin/python benchmarks/bootstrap.py --rows 100000 --resamples 1000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from modelcycle.config import load_config
from modelcycle.evaluation import Outputs
from modelcycle.gate import bootstrap_metrics

REPO = Path(__file__).resolve().parent.parent
CLASSES = np.array([0, 1])


def _case(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random(rows) < 0.4
    shared = rng.normal(size=rows)
    champion = truth * 1.0 + shared + rng.normal(size=rows)
    challenger = truth * 1.1 + shared + rng.normal(size=rows)
    return truth, 1 / (1 + np.exp(-challenger)), 1 / (1 + np.exp(-champion))


def loop(truth: np.ndarray, new: np.ndarray, old: np.ndarray, index: np.ndarray) -> np.ndarray:
    """What a straightforward implementation does: two scikit-learn calls per resample."""
    return np.array(
        [roc_auc_score(truth[ix], new[ix]) - roc_auc_score(truth[ix], old[ix]) for ix in index]
    )


def vectorised(truth: np.ndarray, new: np.ndarray, old: np.ndarray, resamples: int, seed: int):
    """modelcycle's code path: `bootstrap_metrics`, both models on the same count rows."""
    config = load_config(REPO / "configs" / "demo.yaml")  # binary, roc_auc, positive class 1

    def outputs(proba: np.ndarray) -> Outputs:
        return Outputs((proba >= 0.5).astype(int), np.column_stack([1 - proba, proba]), CLASSES)

    draws = bootstrap_metrics(
        truth.astype(int), [outputs(new), outputs(old)], ["roc_auc"], config, resamples, seed
    )["roc_auc"]
    return draws[0] - draws[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5569)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    truth, new, old = _case(args.rows, args.seed)
    # The resamples bootstrap_metrics draws (drawing in chunks gives the same numbers).
    index = np.random.default_rng(args.seed).integers(
        0, args.rows, size=(args.resamples, args.rows)
    )
    start = time.perf_counter()
    fast = vectorised(truth, new, old, args.resamples, args.seed)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = loop(truth, new, old, index)
    slow_s = time.perf_counter() - start

    assert np.allclose(fast, slow), "vectorised and scikit-learn differences disagree"
    print(f"rows {args.rows}, resamples {args.resamples} (paired ROC AUC difference)")
    print(f"  scikit-learn loop : {slow_s:8.2f} s")
    print(f"  vectorised        : {fast_s:8.2f} s")
    gap = np.abs(fast - slow).max()
    print(f"  speed-up          : {slow_s / fast_s:8.1f}x  (max |difference| {gap:.1e})")


if __name__ == "__main__":
    main()
