"""Run pip-audit on the Lambda layer's requirements and say clearly what happened: `make scan` runs this.

Fails on a known vulnerability, and also when a requirement could not be audited (PyPI's vulnerability data
unreachable, or the package version unknown to it): an audit that saw nothing must not pass as clean. Set
PIP_AUDIT_UNREACHABLE=warn to let an unauditable requirement through with a loud warning (never a vulnerability).

Usage: python -m tests.reliability.pip_audit_check PATH/TO/pip-audit REQUIREMENTS.txt
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    pip_audit, requirements = argv
    command = [pip_audit, "--progress-spinner", "off", "--vulnerability-service", "pypi", "--format", "json"]
    run = subprocess.run([*command, "-r", requirements], capture_output=True, text=True, timeout=600, check=False)
    try:
        report: dict[str, Any] = json.loads(run.stdout)
    except ValueError:
        print(run.stderr[-3000:], file=sys.stderr)
        print(f"pip-audit: FAILED to run (exit {run.returncode}); nothing was audited", file=sys.stderr)
        return 1
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if "skip_reason" in d]
    for dependency in vulnerable:
        ids = ", ".join(v["id"] for v in dependency["vulns"])
        print(f"pip-audit: {dependency['name']} {dependency['version']} is VULNERABLE: {ids}", file=sys.stderr)
    for dependency in skipped:
        print(f"pip-audit: {dependency['name']} NOT AUDITED: {dependency['skip_reason']}", file=sys.stderr)
    if vulnerable:
        return 1
    if skipped:
        print(
            f"pip-audit: {len(skipped)} of {len(dependencies)} requirements could not be audited: PyPI's vulnerability "
            "data (https://pypi.org/pypi/<name>/<version>/json) is unreachable or incomplete from here.",
            file=sys.stderr,
        )
        if os.environ.get("PIP_AUDIT_UNREACHABLE") == "warn":
            print("pip-audit: PIP_AUDIT_UNREACHABLE=warn: continuing WITHOUT a complete audit", file=sys.stderr)
            return 0
        return 1
    print(f"pip-audit: {len(dependencies)} requirements audited, no known vulnerability")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
