"""EC2 part of `pt teardown`: the instances and AMIs (with their EBS snapshots) that a stage's
`teardown.ec2` names, by id, by Name tag / AMI name, or by tags.

Order (dependencies first): terminate the instances and wait until they are terminated (an AMI
or snapshot in use by a running instance cannot go; terminating also deletes the volumes marked
DeleteOnTermination), then deregister the AMIs, then delete the snapshots those AMIs were made
of. A snapshot still used by another AMI (not named) is kept, with the reason. Only AMIs owned by
the account (`Owners=["self"]`) are ever considered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TERMINATE_TIMEOUT = 900.0


@dataclass
class Ec2Inventory:
    instances: dict[str, dict] = field(default_factory=dict)   # id -> {name, state, matched_by}
    amis: dict[str, dict] = field(default_factory=dict)        # id -> {name, snapshots, matched_by}
    not_found: list[str] = field(default_factory=list)         # configured names/ids that match nothing

    def listing(self) -> list[dict]:
        out = [{"type": "ec2:instance", "name": i, "detail": f"{d['name'] or '-'} ({d['state']}; {d['matched_by']})"}
               for i, d in self.instances.items()]
        for a, d in self.amis.items():
            out.append({"type": "ec2:image", "name": a, "detail": f"{d['name'] or '-'} ({d['matched_by']})"})
            out += [{"type": "ec2:snapshot", "name": s, "detail": f"of {a}"} for s in d["snapshots"]]
        return out


def _sub(text: str, project: str, stage: str) -> str:
    return text.replace("{project}", project).replace("{stage}", stage)


def _name(tags: list[dict] | None) -> str | None:
    return next((t["Value"] for t in tags or [] if t.get("Key") == "Name"), None)


def _instances(ec2: Any, filters: list[dict] | None = None, ids: list[str] | None = None) -> list[dict]:
    kw: dict[str, Any] = {}
    if filters:
        kw["Filters"] = filters
    if ids:
        kw["InstanceIds"] = ids
    out = []
    for page in ec2.get_paginator("describe_instances").paginate(**kw):
        for r in page.get("Reservations", []):
            out += r.get("Instances", [])
    return out


def discover(ec2: Any, spec: Any, project: str, stage: str) -> Ec2Inventory:
    """What `spec` (a TeardownEc2Config) names and still exists. Read-only."""
    inv = Ec2Inventory()
    tag_filters = [{"Name": f"tag:{k}", "Values": [_sub(v, project, stage)]} for k, v in spec.tags.items()]

    def add_instance(i: dict, how: str) -> None:
        state = i.get("State", {}).get("Name", "?")
        if state == "terminated":
            return
        inv.instances.setdefault(i["InstanceId"], {"name": _name(i.get("Tags")), "state": state, "matched_by": how})

    for ref in spec.instances:
        ref = _sub(ref, project, stage)
        found = []
        if ref.startswith("i-"):
            try:
                found = _instances(ec2, ids=[ref])
            except Exception as e:
                if "InvalidInstanceID" not in str(getattr(e, "response", {}).get("Error", {}).get("Code", "")):
                    raise
        else:
            found = _instances(ec2, filters=[{"Name": "tag:Name", "Values": [ref]}])
        live = [i for i in found if i.get("State", {}).get("Name") != "terminated"]
        for i in live:
            add_instance(i, f"instances: {ref}")
        if not live:
            inv.not_found.append(f"instance {ref}")
    if tag_filters:
        for i in _instances(ec2, filters=tag_filters):
            add_instance(i, "tags")

    def add_image(img: dict, how: str) -> None:
        snaps = [m["Ebs"]["SnapshotId"] for m in img.get("BlockDeviceMappings", [])
                 if m.get("Ebs", {}).get("SnapshotId")]
        inv.amis.setdefault(img["ImageId"], {"name": img.get("Name"), "snapshots": snaps, "matched_by": how})

    for ref in spec.amis:
        ref = _sub(ref, project, stage)
        if ref.startswith("ami-"):
            try:
                imgs = ec2.describe_images(ImageIds=[ref], Owners=["self"]).get("Images", [])
            except Exception as e:
                if "InvalidAMIID" not in str(getattr(e, "response", {}).get("Error", {}).get("Code", "")):
                    raise
                imgs = []
        else:
            imgs = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ref]}]).get("Images", [])
        for img in imgs:
            add_image(img, f"amis: {ref}")
        if not imgs:
            inv.not_found.append(f"AMI {ref}")
    if tag_filters:
        for img in ec2.describe_images(Owners=["self"], Filters=tag_filters).get("Images", []):
            add_image(img, "tags")
    return inv


def snapshots_in_use(ec2: Any, snapshots: list[str], leaving: set[str]) -> dict[str, str]:
    """snapshot -> the AMI (not being deregistered) that still uses it."""
    used: dict[str, str] = {}
    if not snapshots:
        return used
    for img in ec2.describe_images(Owners=["self"]).get("Images", []):
        if img["ImageId"] in leaving:
            continue
        for m in img.get("BlockDeviceMappings", []):
            sid = m.get("Ebs", {}).get("SnapshotId")
            if sid in snapshots:
                used.setdefault(sid, img["ImageId"])
    return used


def terminate_and_wait(ec2: Any, ids: list[str], clock: Callable[[], float], sleep: Callable[[float], None],
                       timeout: float = TERMINATE_TIMEOUT, poll: float = 5.0) -> str:
    """Terminate, then poll until every instance is terminated (or the deadline: an error)."""
    ec2.terminate_instances(InstanceIds=ids)
    deadline = clock() + timeout
    while True:
        states = {i["InstanceId"]: i.get("State", {}).get("Name") for i in _instances(ec2, ids=ids)}
        waiting = sorted(i for i, s in states.items() if s != "terminated")
        if not waiting:
            return f"{len(ids)} terminated"
        if clock() >= deadline:
            raise TimeoutError(f"still not terminated after {timeout:g}s: {', '.join(waiting)}")
        sleep(poll)
