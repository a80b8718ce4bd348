"""Starting or joining Ray with the settings these machines need (loopback, no usage stats)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aptray.config import RayConfig

log = logging.getLogger(__name__)


#: Whether the Ray cluster of this process was started by :func:`init_ray` (a local one: no autoscaler).
_STARTED_HERE: dict[str, bool] = {"local": False}


def check_gpus(asked: float, key: str, fix: str) -> None:
    """Refuse work that asks more GPUs than the local cluster :func:`init_ray` started has: nothing can add one,
    and Ray waits for them for ever (the shipped job configs ask GPUs; on a CPU-only machine the embed and train
    jobs hung). On a joined cluster an autoscaling GPU pool may add them: the stages log while they wait.

    Args:
        asked: GPUs one actor or worker needs.
        key: the config key that asks them (named in the error).
        fix: the setting that runs on CPU instead.

    Raises:
        ConfigError: naming the key, the GPUs the cluster has and the fix.
    """
    import ray

    from aptray.errors import ConfigError

    if asked <= 0 or not _STARTED_HERE["local"]:
        return
    have = float(ray.cluster_resources().get("GPU", 0.0))
    if have < asked:
        raise ConfigError(f"{key} asks {asked:g} GPU(s) but the local Ray cluster aptray started has {have:g}: {fix}, "
                          "or join a cluster with GPUs (ray.address / RAY_ADDRESS)")


def init_ray(cfg: RayConfig | None = None) -> None:
    """Connect to ``cfg.address`` (or env ``RAY_ADDRESS``), else start a local cluster on loopback.

    A no-op when Ray is already initialised in this process (tests share one cluster). Unless verbose
    (:func:`aptray.logs.verbose`), Ray's console output and its workers' lines stay in the session's log files,
    whose folder is logged once.
    """
    import logging as logging_

    import ray

    from aptray.config import RayConfig
    from aptray.logs import quiet_ray_console, verbose

    cfg = cfg or RayConfig()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = _progress_bars()
    loud = verbose()
    level = logging_.INFO if loud else logging_.ERROR
    if address:
        log.info("joining Ray cluster at %s", address)
        if cfg.preload_modules:
            log.warning("ray.preload_modules applies to a cluster aptray starts; on %s set "
                        "RAY_preload_python_modules=%s in the nodes' environment", address,
                        ",".join(cfg.preload_modules))
        ray.init(address=address, log_to_driver=loud, logging_level=level)
    else:
        log.info("starting a local Ray cluster on %s", cfg.node_ip_address)
        _STARTED_HERE["local"] = True
        ray.init(
            address="local",
            _node_ip_address=cfg.node_ip_address,
            num_cpus=int(cfg.num_cpus) if cfg.num_cpus else None,
            num_gpus=int(cfg.num_gpus) if cfg.num_gpus else None,
            include_dashboard=cfg.include_dashboard,
            log_to_driver=loud,
            logging_level=level,
            _system_config=local_system_config(cfg),
        )
    ray.data.DataContext.get_current().enable_progress_bars = _progress_bars()
    quiet_ray_console()
    keep_errors_off_stdout()
    stop_on_sigterm()
    if not loud:
        log.info("Ray's own logs: %s (aptray -v or APTRAY_VERBOSE=1 prints them)", ray_logs_dir())


def _interrupt(signum: int, _frame: object) -> None:
    import signal

    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_sigterm() -> None:
    """SIGTERM (``ray job stop``, ``docker stop``, systemd, ``kill``) stops the command as Ctrl-C does: its own
    clean-up runs and the console script ends with ``aptray: interrupted``. Ray's driver installs a handler that
    dumps a native stack trace (``logging.cc ... SIGTERM received``) and exits 15; this one replaces it. Only in
    the main thread, where Python allows a handler."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def keep_errors_off_stdout() -> None:
    """Keep the error messages Ray's driver thread prints for the cluster (``(raylet) Task ... failed``) off stdout,
    which holds the command's one JSON line: on stderr when verbose, else only in this module's debug log.

    Ray prints them to stdout whatever ``log_to_driver`` says (``ray._private.worker.listen_error_messages``);
    ``aptray serve`` wrote ``(raylet) Task ServeController.graceful_shutdown failed ... killed by ray.kill`` there,
    with terminal colour codes, after its JSON line at every stop. A failed task that matters reaches aptray as its
    exception anyway. Patches that module's ``print_to_stdstream`` once, for the cluster's error messages only.
    """
    from ray._private import worker

    from aptray.logs import verbose

    printer = worker.print_to_stdstream
    if getattr(printer, "aptray_routed", False):
        return

    def route(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet" or data.get("is_err"):
            printer(data, ignore_prefix)
        elif verbose():
            printer({**data, "is_err": True}, ignore_prefix)
        else:
            log.debug("Ray: %s", " ".join(str(line) for line in data.get("lines") or []))

    route.aptray_routed = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = route


def local_system_config(cfg: RayConfig) -> dict[str, object] | None:
    """Ray system settings of a local cluster: its workers' preloaded modules (``cfg.preload_modules``), if any."""
    return {"preload_python_modules": list(cfg.preload_modules)} if cfg.preload_modules else None


def ray_logs_dir() -> str:
    """The log folder of this process's Ray session (workers' output and Ray's own logs)."""
    try:
        from ray._private.worker import _global_node

        return str(_global_node.get_logs_dir_path())  # type: ignore[attr-defined]
    except Exception:  # a private API: fall back to the default location
        return "/tmp/ray/session_latest/logs"


def _progress_bars() -> bool:
    from aptray.logs import progress_bars_enabled

    return progress_bars_enabled()


def preload_torch() -> None:
    """Import torch before the AWS SDK (pyarrow's S3) is initialised in this process.

    torch's CPU library needs static TLS; loading it after pyarrow has initialised S3 fails with
    "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so" and kills the process. Processes that read
    artifacts or data from S3 and then build torch models (job drivers, scoring actors) call this first.
    """
    import importlib.util

    if importlib.util.find_spec("torch") is not None:  # torch-free installs only read and template
        importlib.import_module("torch")
