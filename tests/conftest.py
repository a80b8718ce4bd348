"""Shared fixtures: one small local Ray cluster per test session, a loopback S3 server, the real data folder; and
:func:`run_aptray`, the console script run in this process."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """``$APTRAY_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("APTRAY_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public datasets; tests that need them skip where the folder is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set APTRAY_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def ray_cluster(s3_server: str) -> Iterator[None]:
    """One small local Ray cluster on loopback for the whole session (2 CPUs).

    It depends on ``s3_server`` so that Ray's workers inherit the loopback S3 endpoint and credentials.
    """
    import ray

    from aptray.config import RayConfig
    from aptray.runtime import init_ray

    init_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def _no_warm_encoders_after_module() -> Iterator[None]:
    """A module may keep encoder actors warm between its jobs (``embed.keep_warm_s``); none outlive it, so the
    next module on this worker's cluster has its CPUs."""
    yield
    import ray

    if ray.is_initialized():
        from aptray.embed.pool import stop_all_warm

        stop_all_warm()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API server (moto) on 127.0.0.1; sets the AWS env so s3fs, pyarrow and Ray reach it.

    Yields the endpoint URL.
    """
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_bucket(bucket: str) -> Any:
    """Create ``bucket`` on the loopback S3 server if it is not there (aptray never creates one); returns a client."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    return s3


def upload_dir(local: Path, bucket: str, prefix: str = "") -> str:
    """Copy a local folder into a bucket on the loopback S3 server; returns the ``s3://`` URI."""
    s3 = make_bucket(bucket)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            key = "/".join(p for p in (prefix, str(path.relative_to(local))) if p)
            s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{prefix}".rstrip("/")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` the parametrised cases a module lists in ``SLOW_CASES`` (``{test name: {param id, ...}}``),
    before ``-m 'not slow'`` deselects: the costly variants of a test run under ``-m slow`` only."""
    for item in items:
        slow = getattr(item.module, "SLOW_CASES", {}) if isinstance(item, pytest.Function) else {}
        name = getattr(item, "originalname", item.name)
        callspec = getattr(item, "callspec", None)
        if name in slow and callspec is not None and set(callspec.id.split("-")) & slow[name]:
            item.add_marker(pytest.mark.slow)


def run_aptray(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
               ) -> tuple[int, Any, str]:
    """Run the ``aptray`` console script in this process (not verbose): its exit code, its JSON line (None if it
    printed none) and its stderr."""
    import json
    import sys

    from aptray.cli import main

    monkeypatch.setattr(sys, "argv", ["aptray", *args])
    monkeypatch.delenv("APTRAY_VERBOSE", raising=False)  # also undoes what ``-v`` sets
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    lines = [ln for ln in out.out.splitlines() if ln.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else None), out.err
