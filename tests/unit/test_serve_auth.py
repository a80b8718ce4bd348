"""API keys of the online detector: sources, constant-time check, header forms, never logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aptray.serve.auth import ENV_VAR, ApiKeyError, ApiKeys

KEY = "k3y-0123456789abcdef"
OTHER = "other-0123456789abcdef"


def test_env_keys_comma_separated() -> None:
    keys = ApiKeys.load(env={ENV_VAR: f" {KEY} , {OTHER} "})
    assert keys.check(KEY) and keys.check(OTHER)
    assert not keys.check(KEY + "x") and not keys.check(KEY[:-1]) and not keys.check(None) and not keys.check("")


def test_file_keys_skip_comments_and_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text(f"# rotation\n\n{KEY}\n  {OTHER}  \n")
    keys = ApiKeys.load(str(f), env={})
    assert keys.check(KEY) and keys.check(OTHER) and not keys.check("# rotation")


def test_required_without_any_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError, match=ENV_VAR):
        ApiKeys.load(env={})
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(ApiKeyError):
        ApiKeys.load(str(empty), env={})
    with pytest.raises(ApiKeyError, match="cannot read"):
        ApiKeys.load(str(tmp_path / "missing"), env={ENV_VAR: KEY})


def test_short_keys_are_refused() -> None:
    with pytest.raises(ApiKeyError, match="shorter"):
        ApiKeys.load(env={ENV_VAR: "short"})


def test_opt_out_lets_every_request_pass() -> None:
    keys = ApiKeys.load(required=False, env={})
    assert keys.check(None) and keys.check("anything")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": f"Bearer {KEY}"}, KEY),
        ({"authorization": f"bearer   {KEY} "}, KEY),
        ({"x-api-key": KEY}, KEY),
        ({"authorization": f"Basic {KEY}"}, None),
        ({"authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert ApiKeys.presented(headers) == expected


def test_keys_never_logged_or_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "keys"
    f.write_text(OTHER + "\n")
    with caplog.at_level(logging.DEBUG, logger="aptray.serve.auth"):
        keys = ApiKeys.load(str(f), env={ENV_VAR: KEY})
        keys.check("wrong-0123456789abcdef")
    assert caplog.records, "loading should say where keys came from"
    assert KEY not in caplog.text and OTHER not in caplog.text
    assert KEY not in repr(keys) and OTHER not in repr(keys)
