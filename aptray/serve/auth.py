"""API keys of the online detector: where they come from, and a constant-time check of a request's headers.

Keys come from the environment variable ``APTRAY_API_KEY`` (one key, or several separated by commas, for
rotation) and/or a key file (one key per line, ``#`` comments). Only SHA-256 digests of the keys are kept in
memory after loading, and a presented key is hashed and compared with :func:`hmac.compare_digest` against
every configured digest, so neither the key's length nor which key matched shows in the timing. Keys are
never logged: messages name the *source* of the keys, never their values.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

ENV_VAR = "APTRAY_API_KEY"
#: The shortest key accepted; shorter ones are refused at load time.
MIN_KEY_CHARS = 16


class ApiKeyError(RuntimeError):
    """No usable API key where one is required, or an unreadable key file."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The configured keys (as digests) and the check of a request's headers.

    Args:
        digests: SHA-256 digests of the accepted keys.
        required: when False every request passes (explicitly opted out of authentication).
    """

    def __init__(self, digests: list[bytes], required: bool = True) -> None:
        if required and not digests:
            raise ApiKeyError(
                f"an API key is required: set {ENV_VAR} or serve.api_key_file "
                "(or set serve.require_api_key: false to run without authentication)"
            )
        self._digests = tuple(digests)
        self.required = required

    def __repr__(self) -> str:  # never show the digests either
        return f"ApiKeys(keys={len(self._digests)}, required={self.required})"

    @classmethod
    def load(cls, key_file: str | None = None, required: bool = True, env: Mapping[str, str] | None = None) -> ApiKeys:
        """Read keys from ``$APTRAY_API_KEY`` (comma-separated) and ``key_file`` (one per line).

        Raises:
            ApiKeyError: ``required`` and no key found, a key shorter than :data:`MIN_KEY_CHARS`, or an
                unreadable key file.
        """
        env = os.environ if env is None else env
        keys: list[str] = [k.strip() for k in env.get(ENV_VAR, "").split(",") if k.strip()]
        sources = [ENV_VAR] if keys else []
        if key_file:
            try:
                text = Path(key_file).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise ApiKeyError(f"cannot read the API key file {key_file}: {type(exc).__name__}") from None
            from_file = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            keys += from_file
            if from_file:
                sources.append(str(key_file))
        short = sum(1 for k in keys if len(k) < MIN_KEY_CHARS)
        if short:
            raise ApiKeyError(f"{short} API key(s) from {', '.join(sources)} are shorter than {MIN_KEY_CHARS} chars")
        log.debug("API keys: %d loaded from %s; required=%s", len(keys), ", ".join(sources) or "nowhere", required)
        return cls([_digest(k) for k in keys], required=required)

    @staticmethod
    def presented(headers: Mapping[str, str]) -> str | None:
        """The key a request presents: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
        auth = headers.get("authorization")
        if auth:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        key = headers.get("x-api-key")
        return key.strip() if key and key.strip() else None

    def check(self, presented: str | None) -> bool:
        """True when authentication is off or ``presented`` is one of the keys (constant time per key)."""
        if not self.required:
            return True
        if presented is None:
            return False
        digest = _digest(presented)
        ok = False
        for d in self._digests:  # no early exit: the time does not depend on which key matched
            ok |= hmac.compare_digest(digest, d)
        return ok
