"""The service's credential and the temporary server's bookkeeping, without a server.

The real server refusing strangers, foreign origins and job variables is tested in
tests/test_service_e2e.py; a killed command's temporary server in tests/test_crash_windows.py.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from modelcycle.cli import AUTH_ENV, ensure_credential, prepare_prefect_env, server_security_env
from modelcycle.errors import ModelcycleError
from modelcycle.settings import get_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credential_is_made_once_random_and_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "service" / "auth-string"
    first = ensure_credential(path)
    assert ensure_credential(path) == first  # made once, then read
    user, password = first.split(":", 1)
    assert user == "modelcycle" and len(password) >= 40
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    other = ensure_credential(tmp_path / "elsewhere" / "auth-string")
    assert other != first


def test_a_credential_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "service" / "auth-string"
    ensure_credential(path)
    path.chmod(0o644)
    with pytest.raises(ModelcycleError, match=r"auth-string: readable by other users .*chmod 600"):
        ensure_credential(path)


def test_a_malformed_credential_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth-string"
    path.write_text("no-colon-here\n")
    path.chmod(0o600)
    with pytest.raises(ModelcycleError, match="auth-string: expected one line 'user:password'"):
        ensure_credential(path)


def test_server_settings_close_the_service(tmp_path: Path) -> None:
    env = server_security_env(4321, "modelcycle:secret")
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == "modelcycle:secret"
    assert env["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    origins = env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"].split(",")
    assert origins == ["http://127.0.0.1:4321", "http://localhost:4321"]


@pytest.mark.parametrize(
    ("api_url", "sent"),
    [
        ("http://127.0.0.1:4200/api", True),
        ("http://localhost:4200/api", True),
        ("https://prefect.example.com/api", False),  # never sent to another host
    ],
)
def test_commands_send_the_stored_credential_to_loopback_only(
    state: Any, monkeypatch: pytest.MonkeyPatch, api_url: str, sent: bool
) -> None:
    credential = ensure_credential(get_settings().home / "service" / "auth-string")
    monkeypatch.setenv("PREFECT_API_URL", api_url)
    monkeypatch.delenv(AUTH_ENV, raising=False)  # restored (removed) after the test
    prepare_prefect_env()
    assert (os.environ.get(AUTH_ENV) == credential) is sent


def test_an_exported_credential_wins_and_is_never_written(
    state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelcycle.cli._server import Service

    monkeypatch.setenv(AUTH_ENV, "ops:from-the-vault")
    service = Service(get_settings().home / "service", 4321)
    env = service.env({AUTH_ENV: "ops:from-the-vault"})
    assert env[AUTH_ENV] == "ops:from-the-vault"
    assert not service.credential_file.exists()
    shown = service.credential_shown({AUTH_ENV: "ops:from-the-vault"})
    assert "from-the-vault" not in shown and AUTH_ENV in shown


def test_printed_commands_name_the_credential_file_not_its_value(tmp_path: Path) -> None:
    from modelcycle.cli._server import SERVER_KEYS, Service, _shown

    service = Service(tmp_path / "service", 4321)
    env = service.server_env({})
    line = _shown(["prefect", "server", "start"], env, SERVER_KEYS, service.credential_shown({}))
    secret = env["PREFECT_SERVER_API_AUTH_STRING"].split(":", 1)[1]
    assert secret not in line
    assert f'"$(cat {service.credential_file})"' in line
    assert "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED=true" in line


def test_temporary_server_records_only_runs_whose_state_was_set() -> None:
    from modelcycle.cli._temporary_server import RunRecorder

    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    ids: set[str] = set()
    recorder = RunRecorder(app, ids)
    run = "0b6c6f4e-5c1c-4d7e-9a8a-2f1d5e0c9b11"
    requests = [
        {"type": "http", "method": "POST", "path": f"/api/flow_runs/{run}/set_state"},
        {"type": "http", "method": "GET", "path": f"/api/flow_runs/{run.replace('0b', '1c')}"},
        {"type": "http", "method": "POST", "path": "/api/flow_runs/filter"},
        {"type": "lifespan"},
    ]
    for scope in requests:
        asyncio.run(recorder(scope, None, None))
    assert ids == {run}
    assert len(seen) == 4  # every request still reaches Prefect's app
