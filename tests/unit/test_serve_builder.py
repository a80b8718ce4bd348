"""The typed Serve builder and the Serve config it is deployed from (no cluster needed: nothing is deployed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError


def test_serve_validates_builder_args_into_the_config_model() -> None:
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application

    from aptray.serve.app import build_app as typed_builder

    build_app: Any = typed_builder  # Serve's own signature says FunctionType
    app = call_user_app_builder_with_args_if_necessary(build_app, {"artifact": "/models/ae", "replicas": 3})
    assert isinstance(app, Application)
    with pytest.raises(ValidationError, match="max_batch_size"):
        call_user_app_builder_with_args_if_necessary(build_app, {"artifact": "/a", "max_batch_size": 0})
    with pytest.raises(ValidationError, match="colour"):
        call_user_app_builder_with_args_if_necessary(build_app, {"artifact": "/a", "colour": 1})
    with pytest.raises(ValueError, match="artifact"):
        call_user_app_builder_with_args_if_necessary(build_app, {})


def test_deployment_options_from_config() -> None:
    from aptray.config import ServeAutoscaling, ServeConfig
    from aptray.serve.app import deployment_options

    fixed = deployment_options(ServeConfig(replicas=3, max_ongoing_requests=16, num_cpus=1, num_gpus=0.5))
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] == 16
    assert fixed["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.5,
                                          "runtime_env": {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}}
    spinning = deployment_options(ServeConfig(num_cpus=1, omp_passive=False))
    assert spinning["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0}
    auto = deployment_options(ServeConfig(autoscaling=ServeAutoscaling(min_replicas=0, max_replicas=5)))
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"]["max_replicas"] == 5 and auto["autoscaling_config"]["initial_replicas"] == 1


def test_gpu_replicas_encode_on_cuda() -> None:
    from aptray.config import ServeConfig
    from aptray.serve.loader import ArtifactLoader

    assert ArtifactLoader.from_config(ServeConfig(artifact="/a", num_gpus=1)).device == "cuda"
    assert ArtifactLoader.from_config(ServeConfig(artifact="/a")).device == "cpu"


def test_serve_config_command_writes_a_deployable_yaml(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aptray.cli import app
    from aptray.commands.serve import IMPORT_PATH
    from aptray.config import ServeConfig

    out = tmp_path / "serve.yaml"
    res = CliRunner().invoke(app, ["serve-config", "s3://bucket/ae", "--out", str(out), "--replicas", "2",
                                   "--port", "9000"])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(out.read_text())
    assert doc["http_options"] == {"host": "0.0.0.0", "port": 9000}  # pods: every interface (loopback got no traffic)
    (application,) = doc["applications"]
    assert application["import_path"] == IMPORT_PATH
    args = ServeConfig.model_validate(application["args"])  # what Serve does with the builder's args
    assert args.artifact == "s3://bucket/ae" and args.replicas == 2 and args.require_api_key
    assert "key" not in out.read_text().replace("require_api_key", "")


def test_serve_config_command_takes_more_models_as_serve_does(tmp_path: Path) -> None:
    """``aptray serve`` served several detectors with ``--model NAME=ARTIFACT``; ``serve-config`` had no such option,
    so a cluster's config held the default model only."""
    from typer.testing import CliRunner

    from aptray.cli import app
    from aptray.config import ServeConfig

    out = tmp_path / "serve.yaml"
    res = CliRunner().invoke(app, ["serve-config", "s3://bucket/beth", "--out", str(out),
                                   "--model", "cdm=s3://bucket/cdm", "--model", "auditd=/models/auditd"])
    assert res.exit_code == 0, res.output
    (application,) = yaml.safe_load(out.read_text())["applications"]
    args = ServeConfig.model_validate(application["args"])
    assert args.artifact == "s3://bucket/beth"
    assert args.models == {"cdm": "s3://bucket/cdm", "auditd": "/models/auditd"}
    assert '"models": {"cdm": "s3://bucket/cdm", "auditd": "/models/auditd"}' in res.output


def test_serve_command_refuses_to_start_without_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from aptray.cli import app

    monkeypatch.delenv("APTRAY_API_KEY", raising=False)
    res = CliRunner().invoke(app, ["serve", str(tmp_path / "artifact")])
    assert res.exit_code == 2
    assert "APTRAY_API_KEY" in res.output


def test_direct_ingress_is_cluster_environment_not_builder_args() -> None:
    from aptray.commands.serve import serve_config_yaml
    from aptray.config import ServeConfig
    from aptray.serve.app import direct_ingress_env

    assert direct_ingress_env(ServeConfig(artifact="a")) == {}
    cfg = ServeConfig(artifact="a", direct_ingress_port=31234)
    env = direct_ingress_env(cfg)
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert int(env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]) == 31234
    assert int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) > 31234
    # the replica's drain when it stops: ours, not Ray's 30 s meant for a cloud load balancer
    assert float(env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]) == 2.0
    drained = ServeConfig(artifact="a", direct_ingress_port=31234, direct_ingress_drain_s=30)
    assert float(direct_ingress_env(drained)["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]) == 30.0
    # Ray reads it from the environment when the cluster starts; the builder must not receive it
    (application,) = serve_config_yaml(cfg)["applications"]
    assert "direct_ingress_port" not in application["args"]
    with pytest.raises(ValueError, match="direct_ingress_port"):
        ServeConfig(artifact="a", direct_ingress_port=70000)


def test_replicas_share_the_node_cores_unless_threads_are_set() -> None:
    import os

    from aptray.config import ServeAutoscaling, ServeConfig
    from aptray.embed.encoder import cgroup_cpus, node_threads
    from aptray.serve.loader import ArtifactLoader

    quota = cgroup_cpus()  # a container's CPU limit, below the affinity's cores
    cores = min(len(os.sched_getaffinity(0)), max(1, int(quota)) if quota is not None else 1 << 30)
    assert node_threads(1) == cores and node_threads(4 * cores) == 1 and node_threads(2) == max(1, cores // 2)
    fixed = ArtifactLoader.from_config(ServeConfig(artifact="a", replicas=3))
    assert (fixed.threads, fixed.sharers) == (None, 3)
    scaled = ServeConfig(artifact="a", replicas=1, autoscaling=ServeAutoscaling(max_replicas=5))
    assert ArtifactLoader.from_config(scaled).sharers == 5
    assert ArtifactLoader.from_config(ServeConfig(artifact="a", torch_threads=2)).threads == 2


def test_models_list_the_formats_the_server_answers() -> None:
    """``GET /v1/model`` listed all five formats for every model while the server answered 422 to all but the
    model's own and sentences."""
    from aptray.config import Source
    from aptray.serve.loader import accepted_formats

    def names(*args: Any) -> list[str]:
        return [f.value for f in accepted_formats(*args)]

    assert names(Source.AUDITD, False, False) == ["auditd", "sentence"]
    assert names(Source.SYNTHETIC, False, False) == ["beth", "sentence"]  # the synthetic trace is BETH CSV
    assert names(Source.BETH, True, False) == ["beth"]  # a windowed detector needs raw events
    assert names(Source.CDM, False, True) == names(None, False, False) == ["adapt", "beth", "auditd", "cdm", "sentence"]



def test_a_pods_cpu_limit_caps_the_torch_threads(tmp_path: Path) -> None:
    """In a CPU-limited pod the affinity lists every core of the host: replicas started more threads than the
    limit allows and were throttled."""
    from aptray.embed.encoder import cgroup_cpus

    limit = tmp_path / "cpu.max"
    limit.write_text("700000 100000\n")
    assert cgroup_cpus(str(limit)) == 7.0
    limit.write_text("max 100000\n")
    assert cgroup_cpus(str(limit)) is None
    assert cgroup_cpus(str(tmp_path / "none")) is None
