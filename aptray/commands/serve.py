"""``aptray serve ARTIFACT`` (run the online detector) and ``aptray serve-config ARTIFACT`` (write a Serve YAML)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from aptray.config import ServeConfig

log = logging.getLogger(__name__)

#: ``import_path`` of the typed builder, for ``serve run`` and a RayService ``serveConfigV2``.
IMPORT_PATH = "aptray.serve.app:build_app"


def serve_config_yaml(cfg: ServeConfig) -> dict[str, Any]:
    """A Ray Serve config file (also the ``serveConfigV2`` of a KubeRay RayService) for ``cfg``.

    The builder's ``args`` hold only the fields that differ from their defaults, and never a key: keys
    reach replicas through ``$APTRAY_API_KEY`` (a Kubernetes Secret) or ``api_key_file`` (a mounted file).
    """
    args = cfg.model_dump(mode="json", exclude_defaults=True,
                          exclude={"host", "port", "app_name", "route_prefix", "direct_ingress_port",
                                   "proxy_port"})
    args["artifact"] = cfg.artifact
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": cfg.host, "port": cfg.port},
        "applications": [
            {"name": cfg.app_name, "route_prefix": cfg.route_prefix, "import_path": IMPORT_PATH, "args": args}
        ],
    }


def default_ingress(sc: ServeConfig) -> ServeConfig:
    """The low-latency path, for a cluster started with it: the replica answers on ``sc.port`` itself (Ray Serve
    direct ingress, no proxy hop) and Serve's proxy moves to ``sc.proxy_port`` (default ``port + 1000``, above the
    replicas' port range). Leaves an explicit ``direct_ingress_port`` alone. Changes and returns ``sc``."""
    if sc.direct_ingress_port is None:
        sc.direct_ingress_port, sc.proxy_port = sc.port, sc.proxy_port or sc.port + 1000
    return sc


def serve_urls(sc: ServeConfig) -> dict[str, str]:
    """Where the endpoint answers: ``url`` (the default path), ``path`` (how), ``docs`` and, where the replica
    answers itself, ``proxy_url`` (the proxy path)."""
    prefix = sc.route_prefix.rstrip("/")
    proxy_port = sc.proxy_port or sc.port
    if sc.direct_ingress_port:
        base = f"http://{sc.host}:{sc.direct_ingress_port}"
        return {"url": base + prefix, "path": "straight from the replica", "docs": f"{base}/docs",
                "proxy_url": f"http://{sc.host}:{proxy_port}{prefix}"}
    base = f"http://{sc.host}:{proxy_port}"
    return {"url": base + prefix, "path": "through Serve's proxy", "docs": f"{base}/docs"}


def key_source(sc: ServeConfig) -> str:
    """Where the API keys come from, never the keys: ``$APTRAY_API_KEY``, the key file, or nowhere."""
    from aptray.serve.auth import ENV_VAR

    where = [f"${ENV_VAR}"] if os.environ.get(ENV_VAR, "").strip() else []
    where += [sc.api_key_file] if sc.api_key_file else []
    return " and ".join(where) if where else "nowhere (keys are not required)"


def port_in_use(host: str, port: int) -> str | None:
    """Why a server cannot bind ``host:port`` (bound as the servers bind: address reuse on), or None when it can.

    A port nothing listens on can still be held for up to a minute by the closed connections of a server that
    just stopped (TCP TIME_WAIT, where that server did not reuse addresses); that is said as such, not as
    another process."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            pass
        else:
            return None
    with socket.socket(family) as probe:
        probe.settimeout(1.0)
        listening = probe.connect_ex(({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port)) == 0
    return IN_USE if listening else CLOSING


#: Why a port cannot be bound (:func:`port_in_use`): a process listens there.
IN_USE = "is in use by another process (another aptray serve?); stop it or pick another --port"
#: ... or only the closed connections of a server that just stopped hold it (Ray's replica then binds the next port).
CLOSING = ("is still held by the closed connections of a server that stopped moments ago (TCP TIME_WAIT) after a "
           "minute's wait; pick another --port")
#: Longest wait for a just-stopped server's connections to clear (Linux keeps TIME_WAIT 60 s).
CLOSING_WAIT_S = 65.0


def check_ports(sc: ServeConfig) -> None:
    """Refuse ports another process holds before the cluster starts: Ray would move the replica to the next free port
    and start a second proxy on the same one, so the ready line named a port that another server answered (a second
    ``aptray serve`` on the same ``--port`` did, with clients spread over both servers' models on the proxy's).

    Raises:
        typer.BadParameter: naming the port and the fix.
    """
    import time

    ports = {"--port": sc.direct_ingress_port or sc.port}
    if sc.proxy_port and sc.proxy_port != ports["--port"]:
        ports["Serve's proxy (--port + 1000)"] = sc.proxy_port
    for what, port in ports.items():
        why, waited = port_in_use(sc.host, port), 0.0
        if why == CLOSING:  # a restart right after a stop: wait it out rather than refuse (systemd, a user's retry)
            log.info("waiting for %s:%d: the connections of the server that stopped there are still closing "
                     "(TCP TIME_WAIT, up to a minute)", sc.host, port)
            while why == CLOSING and waited < CLOSING_WAIT_S:
                time.sleep(0.5)
                waited += 0.5
                why = port_in_use(sc.host, port)
        if why is not None:
            raise typer.BadParameter(f"{sc.host}:{port} {why}", param_hint=what)
        if waited:
            log.info("%s:%d is free after %.0f s", sc.host, port, waited)


def _named(pairs: list[str] | None) -> dict[str, str] | None:
    """``["cdm=art/cdm", "auditd=art/auditd"]`` -> ``{"cdm": "art/cdm", ...}``."""
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"expected NAME=ARTIFACT, got {pair!r}", param_hint="--model")
        if name in out:
            raise typer.BadParameter(f"model name {name!r} given twice ({out[name]} and {path})",
                                     param_hint="--model")
        out[name] = path
    return out


#: ``--model NAME=ARTIFACT`` of both commands (:func:`_named` reads it into ``serve.models``).
ModelOption = Annotated[list[str] | None, typer.Option(
    "--model", metavar="<NAME=ARTIFACT>", help="One more detector on the same replicas (repeatable); requests "
    "pick it with \"model\": NAME.")]


def _overrides(artifact: str, port: int | None, host: str | None, replicas: int | None, gpus: float | None,
               model: list[str] | None) -> dict[str, Any]:
    """The ``serve`` section's overrides from the options ``serve`` and ``serve-config`` share (None: not given)."""
    return {"serve.artifact": artifact, "serve.port": port, "serve.host": host, "serve.replicas": replicas,
            "serve.num_gpus": gpus, "serve.models": _named(model)}


def register(app: typer.Typer) -> None:
    """Add the ``serve`` and ``serve-config`` commands to ``app``."""

    @app.command()
    def serve(
        artifact: Annotated[str, typer.Argument(help="Detector artifact folder (local or s3://).")],
        port: Annotated[int | None, typer.Option(help="HTTP port (default 8000).")] = None,
        host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
        replicas: Annotated[int | None, typer.Option(help="Replica count.")] = None,
        gpus: Annotated[float | None, typer.Option(help="GPUs per replica (0: CPU).")] = None,
        api_key_file: Annotated[str | None, typer.Option(help="File of API keys (besides $APTRAY_API_KEY).")] = None,
        direct_ingress_port: Annotated[int | None, typer.Option(
            help="The replica's own port (default: --port itself, where this command starts the cluster).")] = None,
        proxy: Annotated[bool, typer.Option(
            "--proxy", help="Answer on --port through Serve's proxy instead of from the replica itself (one more hop: "
            "about twice the latency of the default on one machine).")] = False,
        allow_format_mismatch: Annotated[bool, typer.Option(
            "--allow-format-mismatch",
            help="Score requests of another format than the artifact was trained on (422 by default).")] = False,
        model: ModelOption = None,
        config: Annotated[str | None, typer.Option(help="YAML config (its serve and ray sections).")] = None,
    ) -> None:
        """Serve the detector over HTTP until interrupted (POST /v1/score, GET /v1/model, /healthz, /docs)."""
        from aptray.commands.common import emit, setup
        from aptray.runtime import init_ray
        from aptray.serve.app import direct_ingress_env, run
        from aptray.serve.auth import ApiKeyError, ApiKeys

        cfg = setup(config, {**_overrides(artifact, port, host, replicas, gpus, model),
                             "serve.api_key_file": api_key_file, "serve.direct_ingress_port": direct_ingress_port,
                             "serve.allow_format_mismatch": allow_format_mismatch or None})
        sc = cfg.serve
        try:  # fail here, not in a replica, when no key is set
            ApiKeys.load(sc.api_key_file, sc.require_api_key)
        except ApiKeyError as exc:
            raise typer.BadParameter(str(exc), param_hint="--api-key-file / $APTRAY_API_KEY") from None
        joining = bool(cfg.ray.address or os.environ.get("RAY_ADDRESS"))
        if not proxy and not joining:
            default_ingress(sc)
        if not joining:  # a running cluster's own Serve holds its ports already
            check_ports(sc)
        from aptray.artifacts import load_detector
        from aptray.templating.base import TEMPLATE_VERSION

        # a missing or bad artifact: its own error here, in a line, not Ray's deployment failure 36 s later
        for path in [p for p in (sc.artifact, *sc.models.values()) if p]:
            load_detector(path, expect_template_version=TEMPLATE_VERSION, trusted=sc.trusted)
        env = direct_ingress_env(sc)
        if env and joining:
            log.warning("direct ingress on a running cluster needs %s in its nodes' environment",
                        ", ".join(f"{k}={v}" for k, v in env.items()))
        os.environ.update(env)  # read by the local cluster's processes when they start
        import time

        from ray import serve as ray_serve

        init_ray(cfg.ray)  # from here on SIGTERM stops it as Ctrl-C does (runtime.stop_on_sigterm), deploying too
        try:
            run(sc)
            info, keys_from = serve_urls(sc), key_source(sc)
            named = "".join(f", {n}={p}" for n, p in sc.models.items())
            emit({**info, "app": sc.app_name, "artifact": sc.artifact, "models": sc.models, "api_key_from": keys_from},
                 [f"serving {sc.artifact}{named} at {info['url']}/v1/score ({info['path']})",
                  f"API keys from {keys_from}; send one as X-API-Key or Authorization: Bearer",
                  f"docs: {info['docs']}   (Ctrl-C stops)"])
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("stopping: in-flight requests finish, then the replicas and the local cluster stop")
            ray_serve.shutdown()
            log.info("stopped")

    @app.command("serve-config")
    def serve_config(
        artifact: Annotated[str, typer.Argument(help="Detector artifact folder (local or s3://).")],
        out: Annotated[Path, typer.Option(help="YAML file to write.")] = Path("serve.yaml"),
        port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
        host: Annotated[str | None, typer.Option(help="Bind address (default 0.0.0.0: every interface of the "
                                                      "cluster's nodes).")] = None,
        replicas: Annotated[int | None, typer.Option(help="Replica count.")] = None,
        gpus: Annotated[float | None, typer.Option(help="GPUs per replica.")] = None,
        model: ModelOption = None,
        config: Annotated[str | None, typer.Option(help="YAML config (its serve section).")] = None,
    ) -> None:
        """Write a Ray Serve config ("serve deploy" / RayService serveConfigV2) for the detector."""
        import yaml

        from aptray.commands.common import emit, setup

        cfg = setup(config, _overrides(artifact, port, host, replicas, gpus, model))
        if "host" not in cfg.serve.model_fields_set:  # a cluster's pods answer on every interface (loopback, the
            cfg.serve.host = "0.0.0.0"                 # aptray serve default, left the Service without traffic)
        doc = serve_config_yaml(cfg.serve)
        out.write_text(yaml.safe_dump(doc, sort_keys=False))
        emit({"config": str(out), "import_path": IMPORT_PATH, "artifact": cfg.serve.artifact,
              "models": cfg.serve.models})
