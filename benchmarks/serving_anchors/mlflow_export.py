"""Save the demo champion as an MLflow model folder for `mlflow models serve`.

An anchor for benchmarks/serving.py, run with the MLflow virtual environment's Python:

    python mlflow_export.py MODEL.skops SHA256 OUT_DIR

The skops file is checked against its SHA-256, loaded, and saved with `mlflow.sklearn`'s
defaults, which is what a user of MLflow gets (MLflow 3.17 itself saves with skops and asks
for the same trusted types). No signature: with one, MLflow's schema enforcement refuses a
JSON null in a string column, and the demo rows have them.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import mlflow.sklearn
import skops.io as sio

TRUSTED = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]


def main(model_path: str, expected_sha256: str, out_dir: str) -> None:
    data = Path(model_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SystemExit(f"{model_path}: SHA-256 does not match")
    model = sio.loads(data, trusted=TRUSTED)
    mlflow.sklearn.save_model(model, out_dir, skops_trusted_types=TRUSTED)


if __name__ == "__main__":
    main(*sys.argv[1:4])
