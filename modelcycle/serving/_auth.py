"""Bearer tokens: from `MODELCYCLE_SERVE_TOKENS`, else a secret file in the state folder that
the first start creates (mode 0600). Tokens are compared in constant time and never logged."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from modelcycle.errors import ConfigError
from modelcycle.serving._settings import TOKENS_ENV, ServeSettings

_TOKEN_BYTES = 32


def ensure_token_file(settings: ServeSettings) -> Path | None:
    """Create the secret file if no tokens are configured; returns it, or None when the
    environment (or --insecure-no-auth) makes it unnecessary."""
    if settings.insecure_no_auth or settings.tokens is not None:
        return None
    path = settings.token_file
    if path.exists():
        _check_private(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return path


def load_tokens(settings: ServeSettings) -> list[bytes]:
    """The accepted tokens; an empty list only with --insecure-no-auth."""
    if settings.insecure_no_auth:
        return []
    if settings.tokens is not None:
        raw = settings.tokens.get_secret_value()
        where = TOKENS_ENV
    else:
        path = settings.token_file
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: no token file and no {TOKENS_ENV}; start with `modelcycle serve`, "
                "which creates it"
            ) from None
        where = str(path)
    tokens = [t.strip().encode() for t in raw.replace("\n", ",").split(",") if t.strip()]
    if not tokens:
        raise ConfigError(f"{where}: holds no token")
    return tokens


def token_matches(header: str | None, tokens: list[bytes]) -> bool:
    """`Authorization: Bearer <token>` against every token, each compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    candidate = given.strip().encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(candidate, token)
    return matched


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path}: token file is readable by others (mode {mode:o}); chmod 600 it")
