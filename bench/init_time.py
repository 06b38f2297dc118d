"""Cold init of each function in a fresh process, against the floor of importing boto3, requests and cryptography.

A local stack runs in this process so that the functions' environment variables point at real (emulated)
resources. Each sample is a fresh ``python`` process with the function's Lambda environment (the same variables
the local runtime gives a worker) that times, inside itself:

- ``import app`` (functions/<f>/app.py: Powertools, boto3 clients, the service wiring);
- first-use set-up: the merchant profile fetched from Secrets Manager, parsed, its keys loaded
  (``app._service.adapters.adapter("antom", "default")``), as the first invocation does.

The floor is a fresh process timing ``import boto3, requests`` and the cryptography modules the signer uses.
Interpreter start-up is outside both. Samples of the three kinds are interleaved. One extra process per
function runs with ``-X importtime`` to say which packages the import time goes to.
Writes bench/results/init_time.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import LAYER, PYTHON, REPO, RESULTS, log, median, write_json
from refund_poller.devstack import DevStack
from refund_poller.local.server import REGION
from refund_poller.local.worker_process import FunctionSpec, worker_environment

SAMPLES = 15
FUNCTIONS = {"start_inquiry": "StartInquiryFunction", "inquire": "InquireFunction"}

FLOOR_CODE = """
import json, time
t0 = time.perf_counter()
import boto3, requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
print(json.dumps({"importMs": (time.perf_counter() - t0) * 1000, "firstUseMs": 0.0}))
"""

FUNCTION_CODE = """
import json, time
t0 = time.perf_counter()
import app
t1 = time.perf_counter()
app._service.adapters.adapter("antom", "default")
t2 = time.perf_counter()
print(json.dumps({"importMs": (t1 - t0) * 1000, "firstUseMs": (t2 - t1) * 1000}))
"""


def function_env(stack: DevStack, logical_id: str, code_dir: Path) -> dict[str, str]:
    name = stack.cloud.function_name(logical_id)
    config = stack.client("lambda").get_function_configuration(FunctionName=name)
    spec = FunctionSpec(
        name=name,
        arn=config["FunctionArn"],
        handler=config["Handler"],
        runtime=config["Runtime"],
        timeout=int(config["Timeout"]),
        memory_size=int(config["MemorySize"]),
        code_dir=code_dir,
        layer_dirs=(LAYER,),
        environment=dict(config.get("Environment", {}).get("Variables", {})),
    )
    return worker_environment(spec, stack.cloud.endpoint_url, REGION)


def sample(code: str, env: dict[str, str], *flags: str) -> tuple[dict[str, float], str]:
    done = subprocess.run(
        [str(PYTHON), *flags, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def importtime_by_package(stderr: str) -> dict[str, float]:
    """Self time per top-level package (ms) from ``-X importtime`` output."""
    totals: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|", 2))
        totals[name.strip().split(".")[0]] += int(self_us) / 1000
    top = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:12]
    return {name: round(ms, 1) for name, ms in top}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, DevStack(Path(tmp)) as stack:
        envs = {short: function_env(stack, logical, REPO / "functions" / short) for short, logical in FUNCTIONS.items()}
        floor_env = {k: v for k, v in envs["inquire"].items() if k != "PYTHONPATH"}
        kinds: dict[str, tuple[str, dict[str, str]]] = {
            "floor": (FLOOR_CODE, floor_env),
            **{short: (FUNCTION_CODE, env) for short, env in envs.items()},
        }
        for code, env in kinds.values():  # compile .pyc files and warm the page cache first
            sample(code, env)
        samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        for _ in range(SAMPLES):
            for kind, (code, env) in kinds.items():
                samples[kind].append(sample(code, env)[0])
        importtime = {
            kind: importtime_by_package(sample(code, env, "-X", "importtime")[1]) for kind, (code, env) in kinds.items()
        }
    floor_ms = median(s["importMs"] for s in samples["floor"])
    detail: dict[str, Any] = {"floorMs": round(floor_ms, 1), "samples": SAMPLES, "importtimeSelfMsByPackage": {}}
    ratios: dict[str, float] = {}
    for kind in FUNCTIONS:
        totals = [s["importMs"] + s["firstUseMs"] for s in samples[kind]]
        detail[kind] = {
            "initMs": round(median(totals), 1),
            "importMs": round(median(s["importMs"] for s in samples[kind]), 1),
            "firstUseMs": round(median(s["firstUseMs"] for s in samples[kind]), 1),
        }
        ratios[kind] = round(median(totals) / floor_ms, 3)
    detail["importtimeSelfMsByPackage"] = importtime
    write_json(RESULTS / "init_time.json", {"init_ratio_vs_import_floor": ratios, "detail": detail})
    log(f"init: floor {floor_ms:.0f} ms, ratios {ratios}")


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    main()
