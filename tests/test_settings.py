"""Where state goes and how many threads training may use, read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelcycle.errors import ConfigError
from modelcycle.settings import get_settings


def test_everything_lives_under_the_state_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path / "home"))
    settings = get_settings()
    assert settings.registry_url == f"sqlite:///{tmp_path / 'home' / 'registry.db'}"
    assert Path(settings.artifact_store).parent == tmp_path / "home"
    assert settings.prefect_home.parent == tmp_path / "home"


def test_registry_and_store_can_move_out(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODELCYCLE_REGISTRY_URL", "postgresql+psycopg://db/registry")
    monkeypatch.setenv("MODELCYCLE_ARTIFACT_STORE", "memory://store")
    settings = get_settings()
    assert (settings.registry_url, settings.artifact_store) == (
        "postgresql+psycopg://db/registry",
        "memory://store",
    )


def test_training_leaves_one_core_for_prefect_by_default(monkeypatch) -> None:
    monkeypatch.delenv("MODELCYCLE_TRAINING_THREADS", raising=False)
    assert get_settings().training_threads == max(1, (os.cpu_count() or 1) - 1)
    monkeypatch.setenv("MODELCYCLE_TRAINING_THREADS", "3")
    assert get_settings().training_threads == 3


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_names_the_variable(monkeypatch, value: str) -> None:
    monkeypatch.setenv("MODELCYCLE_TRAINING_THREADS", value)
    with pytest.raises(ConfigError, match="MODELCYCLE_TRAINING_THREADS"):
        get_settings()
