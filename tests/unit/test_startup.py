"""`pt --help` and `pt --version` stay fast: no boto3, botocore, docker, aws_cdk, pydantic, rich."""

import json
import subprocess
import sys

import pytest

HEAVY = {"boto3", "botocore", "docker", "aws_cdk", "pydantic", "rich", "yaml", "jsii"}

PROBE = """
import json, sys
from pipeline_tools import cli
try:
    cli.main({args!r})
finally:
    heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r})
    sys.stderr.write('HEAVY=' + json.dumps(heavy) + '\\n')
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["config", "--help"]])
def test_help_imports_no_heavy_modules(args):
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)],
                       capture_output=True, text=True, timeout=60)
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("HEAVY="))
    assert json.loads(line[6:]) == []
