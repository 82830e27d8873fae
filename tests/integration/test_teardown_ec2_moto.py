"""`pt teardown` of EC2 instances and AMIs (with their snapshots) named in `teardown.ec2`, on moto
server: dependency order, what is not named stays, dry run, evidence, a snapshot another AMI uses."""

from __future__ import annotations

from .conftest_ops import OPS_CONFIG, write_config

EC2 = """    teardown:
      ec2:
        instances: [vendor-box, "{first}", gone-box]
        amis: ["{{project}}-{{stage}}-base"]
        tags: {{pt:stage: "{{stage}}"}}
"""


def config_with(tmp_path, first: str):
    text = OPS_CONFIG.replace("    gate: {alarms: [\"iris-val-*\"]}\n",
                              "    gate: {alarms: [\"iris-val-*\"]}\n" + EC2.format(first=first), 1)
    return write_config(tmp_path, text)


def run(ec2, name: str | None = None, tags: dict | None = None) -> str:
    all_tags = {**({"Name": name} if name else {}), **(tags or {})}
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}] \
        if all_tags else []
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][0]["InstanceId"]


def image(ec2, instance: str, name: str, tags: dict | None = None) -> tuple[str, list[str]]:
    kw = {"TagSpecifications": [{"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]} \
        if tags else {}
    ami = ec2.create_image(InstanceId=instance, Name=name, **kw)["ImageId"]
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    return ami, [m["Ebs"]["SnapshotId"] for m in img["BlockDeviceMappings"] if "Ebs" in m]


def states(ec2, ids):
    return {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]}


def test_ec2_teardown_in_dependency_order_with_evidence(aws, tmp_path, run_pt):
    ec2 = aws.client("ec2")
    by_name = run(ec2, "vendor-box")
    by_id = run(ec2)
    by_tag = run(ec2, "worker", {"pt:stage": "val"})
    other = run(ec2, "prod-box", {"pt:stage": "prod"})          # not named: stays
    base, base_snaps = image(ec2, by_id, "iris-val-base")
    tagged, tagged_snaps = image(ec2, by_tag, "iris-val-scratch", {"pt:stage": "val"})
    keep, keep_snaps = image(ec2, other, "iris-prod-base")       # not named: stays
    assert base_snaps and tagged_snaps and keep_snaps
    cfg = config_with(tmp_path, by_id)
    from pipeline_tools.release.ledger import ensure_table

    ensure_table(aws.client("dynamodb"), "iris-ledger", project="iris", stage="val", local=True, sleep=lambda s: None)

    dry = run_pt("teardown", "--stage", "val", "--config", cfg, "--dry-run", "--evidence-dir", tmp_path / "dry",
                 "--output", "json")
    assert dry.exit_code == 0, dry
    planned = [(a["step"], a["resource"]) for a in dry.json()["actions"] if a["resource_type"].startswith("ec2")]
    assert ("terminate-instances", ", ".join(sorted([by_name, by_id, by_tag]))) in planned
    assert states(ec2, [by_name, by_id, by_tag]) == dict.fromkeys([by_name, by_id, by_tag], "running")

    r = run_pt("teardown", "--stage", "val", "--config", cfg, "--yes", "--evidence-dir", tmp_path / "ev",
               "--output", "json")
    assert r.exit_code == 0, r
    ev = r.json()
    steps = [a["step"] for a in ev["actions"] if a["resource_type"].startswith("ec2:")]
    assert steps == ["terminate-instances", "deregister-amis", "deregister-amis"] + \
        ["delete-snapshots"] * len(base_snaps + tagged_snaps)
    assert all(a["result"] == "done" for a in ev["actions"] if a["resource_type"].startswith("ec2:"))
    assert {"step": "scope", "resource": "instance gone-box", "result": "absent"}.items() <= next(
        a for a in ev["actions"] if a["resource"] == "instance gone-box").items()
    assert states(ec2, [by_name, by_id, by_tag]) == dict.fromkeys([by_name, by_id, by_tag], "terminated")
    assert states(ec2, [other]) == {other: "running"}
    left = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert base not in left and tagged not in left and keep in left
    snaps = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not (set(base_snaps + tagged_snaps) & snaps) and set(keep_snaps) <= snaps
    found = {(f["type"], f["name"]) for f in ev["found"]}
    assert ("ec2:image", base) in found and ("ec2:snapshot", base_snaps[0]) in found
    assert ev["remaining"] == [] and ev["ok"] is True
    md = next((tmp_path / "ev").glob("*.md")).read_text()
    assert "| terminate-instances | ec2:instance |" in md and base in md
    # the teardown is a ledger record too: `pt history --kind teardown`
    hist = run_pt("history", "--stage", "val", "--config", cfg, "--kind", "teardown", "--output", "json")
    assert hist.exit_code == 0, hist
    [rec] = hist.json()["records"]
    assert rec["id"] == ev["ledger_record"] and rec["state"] == "completed"
    assert rec["what"] == "teardown iris-val-artifacts" and rec["actor"]
    again = run_pt("teardown", "--stage", "val", "--config", cfg, "--yes", "--evidence-dir", tmp_path / "ev2",
                   "--output", "json")
    assert again.exit_code == 0 and not [a for a in again.json()["actions"] if a["step"] == "terminate-instances"]


class SharedSnapshot:
    """The EC2 client, plus one more own AMI made of `snapshot` in DescribeImages (moto's
    RegisterImage ignores BlockDeviceMappings, so it cannot make an AMI share a snapshot)."""

    def __init__(self, ec2, snapshot: str):
        self.ec2, self.snapshot = ec2, snapshot

    def describe_images(self, **kw):
        resp = self.ec2.describe_images(**kw)
        if kw == {"Owners": ["self"]}:
            resp["Images"].append({"ImageId": "ami-0sharedcopy0000", "Name": "copy-of-base", "BlockDeviceMappings": [
                {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": self.snapshot}}]})
        return resp

    def __getattr__(self, name):
        return getattr(self.ec2, name)


def test_snapshot_still_used_by_another_ami_is_kept(aws, tmp_path):
    from pipeline_tools.core.config import load
    from pipeline_tools.ops import teardown as ops

    ec2 = aws.client("ec2")
    inst = run(ec2, "vendor-box")
    base, snaps = image(ec2, inst, "iris-val-base")
    cfg = load(config_with(tmp_path, inst))
    c = ops.Clients(lambda_client=aws.client("lambda"), s3=aws.client("s3"), ecr=aws.client("ecr"),
                    logs=aws.client("logs"), cloudformation=aws.client("cloudformation"),
                    ec2=SharedSnapshot(ec2, snaps[0]))
    ev = ops.teardown(cfg, "val", c, clock=lambda: 1_800_000_000.0, sleep=lambda _s: None,
                      evidence_dir=tmp_path / "ev")
    kept = [k for k in ev.kept if k["type"] == "ec2:snapshot"]
    assert kept == [{"type": "ec2:snapshot", "name": snaps[0], "why": "still used by AMI ami-0sharedcopy0000, "
                                                                      "which teardown.ec2 does not name"}]
    assert snaps[0] in {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert base not in {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
