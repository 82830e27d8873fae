"""The `pt artifacts push` process against moto: what it imports (no boto3, s3transfer, pydantic,
rich: a lean config read and botocore clients on one session) and the requests it makes, by
operation, for the incremental case CI meets (a fresh checkout with one changed file)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLE_CONFIG, ROOT

BUCKET = "iris-staging-artifacts"
NOT_ON_THE_PATH = {"boto3", "s3transfer", "pydantic", "rich", "docker", "aws_cdk", "jsii"}

# Counts botocore's before-send events (one per HTTP request, retries included) by operation, and
# after the command lists the top-level packages it imported.
PROBE = """
import collections, json, sys
import botocore.session
ops = collections.Counter()
orig = botocore.session.Session.__init__
def init(sess, *a, **kw):
    orig(sess, *a, **kw)
    sess.register("before-send", lambda event_name, **_: ops.update([".".join(event_name.split(".")[1:])]))
botocore.session.Session.__init__ = init
from pipeline_tools import cli
try:
    code = cli.main({args!r})
finally:
    mods = sorted({{m.split(".")[0] for m in sys.modules}})
    sys.stderr.write("PROBE=" + json.dumps({{"ops": ops, "modules": mods}}) + "\\n")
sys.exit(code)
"""


def _push(tree, cfg, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    args = ["artifacts", "push", str(tree), "--stage", "staging", "--prefix", "m/v1", "--config", cfg,
            "--output", "json", *extra]
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    line = next((ln for ln in r.stderr.splitlines() if ln.startswith("PROBE=")), None)
    assert line, r.stderr
    return r, json.loads(line[len("PROBE="):])


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "pipeline.yml"
    shutil.copy(EXAMPLE_CONFIG, path)
    return str(path)


def test_incremental_push_process_imports_and_requests(aws, cfg, tmp_path):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    tree = tmp_path / "model"
    for i in range(40):
        p = tree / f"d{i % 4}" / f"f{i:03d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * (1000 + i))
    r, _ = _push(tree, cfg)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["uploaded"] == 40

    checkout = tmp_path / "checkout"  # a fresh checkout (new mtimes), one file changed, same size
    shutil.copytree(tree, checkout, copy_function=shutil.copyfile)
    (checkout / "d1" / "f001.bin").write_bytes(b"\xff" * 1001)
    r, probe = _push(checkout, cfg)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["uploaded"], report["unchanged"]) == (1, 39)
    assert aws.client("s3").get_object(Bucket=BUCKET, Key="m/v1/d1/f001.bin")["Body"].read() == b"\xff" * 1001

    assert not NOT_ON_THE_PATH & set(probe["modules"]), sorted(NOT_ON_THE_PATH & set(probe["modules"]))
    assert probe["ops"] == {
        # the push: remote manifest (its error is the bucket check), resume check of the 1
        # candidate, its upload, then SHA256SUMS and manifest.json (the commit point)
        "s3.GetObject": 1, "s3.HeadObject": 1, "s3.PutObject": 3,
        # the ledger record (`pt history --kind artifacts`): table check, who, the record
        "sts.GetCallerIdentity": 1, "dynamodb.PutItem": 1,  # no DescribeTable: a missing table is found by the put
    }


def test_nothing_changed_uploads_nothing_and_writes_no_manifest(aws, cfg, tmp_path):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "weights.bin").write_bytes(b"w" * 5000)
    assert _push(tree, cfg)[0].returncode == 0
    r, probe = _push(tree, cfg)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["uploaded"] == 0
    assert {k: v for k, v in probe["ops"].items() if k.startswith("s3.")} == {"s3.GetObject": 1}
