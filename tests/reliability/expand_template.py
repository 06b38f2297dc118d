"""Write the SAM-expanded template (what CloudFormation deploys) as JSON, for checkov: `make scan` runs this.

Usage: python -m tests.reliability.expand_template OUT.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from tests.integration.test_template import REGION, OfflineManagedPolicyLoader, load_sam_template, with_inline_code


def expand() -> dict[str, object]:
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the translator derives the partition from it
    expanded: dict[str, object] = transform(with_inline_code(load_sam_template()), {}, OfflineManagedPolicyLoader())
    return expanded


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(expand(), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
