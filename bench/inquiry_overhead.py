"""Per-inquiry CPU overhead: our Antom path against the official Antom Python SDK, side by side in one run.

The sandbox runs in its own process; each client runs in its own process (ours in .venv, the SDK in
bench/.venv-sdk) and measures ``time.process_time`` around each call. Rounds alternate between the two clients
so that machine noise falls on both alike. Writes bench/results/inquiry_overhead.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BENCH, PYTHON, RESULTS, SDK_PYTHON, SandboxProcess, log, median, quantile, write_json

ROUNDS = 12
CALLS_PER_ROUND = 50
WARMUP_CALLS = 30
REFUND_ID = "success--bench-overhead"


class Client:
    def __init__(self, impl: str, python: Path, profile: Path) -> None:
        self.impl = impl
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self.failed = 0
        self._process = subprocess.Popen(
            [str(python), str(BENCH / "inquiry_worker.py"), impl, str(profile), REFUND_ID],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._line()
        if ready.get("ready") != impl:
            raise RuntimeError(f"{impl} client did not start")

    def _line(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.impl} client exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, calls: int, *, keep: bool = True) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{calls}\n")
        self._process.stdin.flush()
        answer = self._line()
        if keep:
            self.cpu.extend(answer["cpu_ms"])
            self.wall.extend(answer["wall_ms"])
            self.failed += calls - int(answer["ok"])

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)

    def summary(self) -> dict[str, Any]:
        return {
            "calls": len(self.cpu),
            "failed": self.failed,
            "cpuMsMedian": round(median(self.cpu), 4),
            "cpuMsP90": round(quantile(self.cpu, 0.9), 4),
            "wallMsMedian": round(median(self.wall), 4),
        }


def main() -> None:
    if not SDK_PYTHON.exists():
        sys.exit(f"{SDK_PYTHON} is missing: `make bench` creates it")
    with tempfile.TemporaryDirectory() as tmp, SandboxProcess(Path(tmp) / "profiles") as sandbox:
        profile = sandbox.profile("antom")
        clients = [Client("ours", PYTHON, profile), Client("sdk", SDK_PYTHON, profile)]
        try:
            for client in clients:
                client.run(WARMUP_CALLS, keep=False)
            for round_number in range(ROUNDS):
                for client in clients if round_number % 2 == 0 else reversed(clients):
                    client.run(CALLS_PER_ROUND)
        finally:
            for client in clients:
                client.close()
    ours, sdk = (client.summary() for client in clients)
    for name, summary in (("ours", ours), ("sdk", sdk)):
        if summary["failed"]:
            sys.exit(f"{name}: {summary['failed']} inquiries did not come back verified SUCCESS")
    result = {
        "inquiry_overhead_ms": ours["cpuMsMedian"],
        "sdk_inquiry_overhead_ms": sdk["cpuMsMedian"],
        "inquiry_overhead_ratio_vs_sdk": round(ours["cpuMsMedian"] / sdk["cpuMsMedian"], 4),
        "detail": {"ours": ours, "sdk": sdk, "rounds": ROUNDS, "callsPerRound": CALLS_PER_ROUND},
    }
    write_json(RESULTS / "inquiry_overhead.json", result)
    log(f"inquiry overhead: ours {ours['cpuMsMedian']} ms, sdk {sdk['cpuMsMedian']} ms")


if __name__ == "__main__":
    main()
