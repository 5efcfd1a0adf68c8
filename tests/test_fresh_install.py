"""A fresh virtual environment built from pyproject.toml alone installs and runs a flow.

This is what a new user's machine does: only Python and pip, the registry, and our files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def _run(cmd: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def test_fresh_venv_installs_and_trains_a_champion(tmp_path: Path, small_config: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MODELCYCLE_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        MODELCYCLE_HOME=str(tmp_path / "state"),
    )
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(REPO)], env, timeout=900)

    # The console script runs the flow on the embedded default (a temporary Prefect server).
    _run([str(bin_dir / "modelcycle"), "train", str(small_config)], env, timeout=600)

    listed = _run([str(bin_dir / "modelcycle"), "models", "list", "--json"], env, timeout=120)
    models = json.loads(listed.stdout)
    assert [(m["name"], m["champion"]) for m in models] == [("gss-income", 1)]
    state = tmp_path / "state"
    assert (state / "registry.db").is_file()
    assert list((state / "artifacts" / "gss-income").glob("*/manifest.json"))
    assert (tmp_path / "prefect").is_dir()
