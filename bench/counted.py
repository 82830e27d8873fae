"""Run `pt ARGS…` in this process with every botocore request counted (`before-send` events).

    python bench/counted.py OUT.json pt-args…

Writes {"total": N, "ops": {"GetAlias": n, …}, "rc": exit code} to OUT.json. Used by the bench
scripts to count pt's own requests; the moto server's request log counts the same run from the
other side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BotoCounter


def main() -> int:
    out, args = sys.argv[1], sys.argv[2:]
    from pipeline_tools import cli

    with BotoCounter() as c:
        rc = cli.main(args)
    Path(out).write_text(json.dumps({"total": c.total, "ops": dict(c.ops), "rc": rc}))
    return rc


if __name__ == "__main__":
    sys.exit(main())
