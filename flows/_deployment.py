"""The demo's parameters, read from prefect.yaml, for running a flow file by hand.

The generic flows have no demo defaults; `python -m flows.<name>` takes the parameters of the
deployment of the same name, so the demo's config and window are written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def deployment_parameters(name: str) -> dict[str, Any]:
    """The `parameters` of the deployment called `name` (YAML anchors resolved)."""
    project = yaml.safe_load(PREFECT_YAML.read_text())
    for deployment in project["deployments"]:
        if deployment["name"] == name:
            return dict(deployment.get("parameters") or {})
    raise KeyError(f"{PREFECT_YAML}: no deployment named {name!r}")
