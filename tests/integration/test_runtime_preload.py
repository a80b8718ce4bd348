"""``ray.preload_modules``: the workers of a local cluster that aptray starts import them when they start.

Runs its own small cluster in a child process (the suite's shared cluster is already started without it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from aptray.config import RayConfig
from aptray.runtime import local_system_config

CHILD = textwrap.dedent("""
    import json, sys
    import ray
    from aptray.config import RayConfig
    from aptray.runtime import init_ray

    init_ray(RayConfig(num_cpus=1, preload_modules=["aptray.windows"]))

    @ray.remote(num_cpus=0.5)
    class Probe:
        def modules(self):
            return {m: m in sys.modules for m in ("aptray.windows", "aptray.evaluate.anchors")}

    print(json.dumps(ray.get(Probe.remote().modules.remote())))
    ray.shutdown()
""")


def test_no_preload_means_no_system_config() -> None:
    assert local_system_config(RayConfig()) is None
    assert local_system_config(RayConfig(preload_modules=["sentence_transformers"])) == {
        "preload_python_modules": ["sentence_transformers"]}


def test_workers_import_the_preloaded_modules_before_any_task() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=180,
                         env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # the preloaded module is there although the actor never imported it; another module of the package is not
    assert seen == {"aptray.windows": True, "aptray.evaluate.anchors": False}
