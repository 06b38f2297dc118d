"""Shared helpers for the benchmarks: paths, medians, child processes, the sandbox subprocess, RSS from /proc."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
PYTHON = REPO / ".venv" / "bin" / "python"
SDK_PYTHON = BENCH / ".venv-sdk" / "bin" / "python"
LAYER = REPO / "layers" / "refund_core"


def median(values: Iterable[float]) -> float:
    data = list(values)
    return float(statistics.median(data)) if data else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    return float(data[min(len(data) - 1, round(q * (len(data) - 1)))])


def write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class SandboxProcess:
    """The provider sandbox in its own process (its CPU is not the client's), profiles written to ``profiles_dir``."""

    def __init__(self, profiles_dir: Path) -> None:
        self.profiles_dir = profiles_dir
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SandboxProcess:
        code = (
            "import sys; from pathlib import Path; from refund_poller.sandbox import Sandbox\n"
            "s = Sandbox(port=0, profiles_dir=Path(sys.argv[1])).bind()\n"
            "print(s.base_url, flush=True); s.serve_forever()\n"
        )
        self._process = subprocess.Popen(
            [str(PYTHON), "-c", code, str(self.profiles_dir)], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        assert self._process.stdout is not None
        self.base_url = self._process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError("the sandbox did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def profile(self, name: str) -> Path:
        return self.profiles_dir / f"{name}.json"


def scan_pages(ddb: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every page of a DynamoDB Scan with these arguments; a page moto fails to read is read again."""
    from botocore.exceptions import ClientError

    while True:
        try:
            page: dict[str, Any] = ddb.scan(**kwargs)
        except ClientError:  # moto's Scan can trip over items written meanwhile (HTTP 500): read again
            time.sleep(0.05)
            continue
        yield page
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def process_tree_rss_mb(root: int | None = None, exclude: int | None = None) -> float:
    """Resident memory of a process and all its descendants but ``exclude`` (MB), read from /proc."""
    root = root or os.getpid()
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid == exclude:
            continue
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


class PeakRss:
    """The peak of :func:`process_tree_rss_mb` of this process's tree, sampled every ``interval`` seconds by a
    process of its own: walking /proc four times a second inside a stack whose services share one interpreter
    lock took a tenth of that process's CPU from what it measures. ``with PeakRss() as peak: ...; peak.mb``."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.mb = 0.0
        self.cpu_s = 0.0
        self.root_mb = 0.0
        """The peak of the measured process alone (its workers not included)."""
        """The sampler's own CPU time: it is a child of this process, so subtract it from children's times."""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> PeakRss:
        code = "import sys; from bench.common import sample_peak_rss as s; s(int(sys.argv[1]), float(sys.argv[2]))"
        self._process = subprocess.Popen(
            [sys.executable, "-c", code, str(os.getpid()), str(self.interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            out, _ = self._process.communicate("stop\n", timeout=30)
            peak, cpu, own = [*out.split(), "0", "0", "0"][:3]
            self.mb, self.cpu_s, self.root_mb = float(peak), float(cpu), float(own)


def sample_peak_rss(root: int, interval: float) -> None:
    """The sampler process of :class:`PeakRss`: samples until a line arrives on stdin, then prints the peak."""
    import select

    peak = own = 0.0
    while True:
        peak = max(peak, process_tree_rss_mb(root, exclude=os.getpid()))
        own = max(own, process_rss_mb(root))
        ready, _, _ = select.select([sys.stdin], [], [], interval)
        if ready:
            print(round(peak, 1), round(time.process_time(), 3), round(own, 1), flush=True)
            return


def process_rss_mb(pid: int) -> float:
    """VmRSS of one process (MB); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gb = int(first.split()[1]) / 1024 / 1024
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memoryGb": round(mem_gb, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


def dynamodb_item_size(raw: dict[str, Any]) -> int:
    """An item's size in bytes by DynamoDB's rule, from its low-level (typed JSON) form: the UTF-8 bytes of each
    attribute's name and value; a number 1 byte per two significant digits plus 1; a boolean or null 1; a list or
    map 3 bytes plus 1 per element plus its elements; a set its elements
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)."""

    def value_size(value: dict[str, Any]) -> int:
        ((kind, inner),) = value.items()
        if kind == "S":
            return len(str(inner).encode())
        if kind == "N":
            digits = str(inner).lstrip("-").replace(".", "").strip("0") or "0"
            return (len(digits) + 1) // 2 + 1
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "SS":
            return sum(len(str(v).encode()) for v in inner)
        if kind == "NS":
            return sum(value_size({"N": v}) for v in inner)
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
        if kind == "L":
            return 3 + sum(value_size(v) + 1 for v in inner)
        raise ValueError(f"attribute type {kind} is not sized here")

    return sum(len(name.encode()) + value_size(value) for name, value in raw.items())


REQUEST_ID = re.compile(r"[;,]?\s*Request ID:\s*[^\s;)]*", re.IGNORECASE)


def error_reasons(items: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many ERROR items (DynamoDB wire form) give each reason: a refund counted as lost says why."""
    reasons: dict[str, int] = {}
    for item in items:
        if item.get("status", {}).get("S") == "ERROR":
            # Request ids make every reason unique: they are cut, so like reasons are counted together.
            reason = REQUEST_ID.sub("", item.get("reason", {}).get("S", "(no reason)"))[:160].strip()
            reasons[reason] = reasons.get(reason, 0) + 1
    return dict(sorted(reasons.items(), key=lambda pair: -pair[1]))
