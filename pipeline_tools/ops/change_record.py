"""`pt change-record`: the change-management record of a deploy, or of the promotion about to happen.

`build(...)` gathers everything from the ledger, CloudWatch, git and the CI context (all passed
in: clients, clock, env and a `git(*args)` callable) into one document (schema 1, docs/records.md);
`render_md(doc)` turns it into the markdown that approvers read. Anything that could not be read
is said so in the document ("could not read …"), never left out: a change record that silently
omits its rollback conditions would look safer than it is.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline_tools.core.errors import PtError, UsageError
from pipeline_tools.release import windows
from pipeline_tools.release.ledger import DEPLOY, Ledger, Record, iso

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

SCHEMA = 1
GitFn = Callable[..., "str | None"]
_GITHUB_RE = re.compile(r"^(?:https://|git@|ssh://git@)(github\.com)[:/]([^/]+)/(.+?)(?:\.git)?/?$")


def git_in(cwd: str | None) -> GitFn:
    """`git(*args)` in `cwd`: stdout, or None when git fails (no repo, unknown revision, …)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=20, cwd=cwd, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    return git


def short(digest: str | None) -> str:
    return "?" if not digest else digest[:19] + "…" if len(digest) > 19 else digest


# --- pieces (pure where possible) ------------------------------------------------------------------


def github_repo(remote: str | None) -> str | None:
    """https://github.com/OWNER/REPO for a GitHub remote URL, else None."""
    m = _GITHUB_RE.match((remote or "").strip())
    return f"https://github.com/{m[2]}/{m[3]}" if m else None


def purpose(option: str | None, env: Mapping[str, str], git: GitFn, rev: str | None) -> dict:
    if option and option.strip():
        return {"text": option.strip(), "source": "--purpose"}
    path = env.get("GITHUB_EVENT_PATH")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                event = json.load(fh)
            pr = event.get("pull_request") if isinstance(event, dict) else None
            if isinstance(pr, dict) and pr.get("title"):
                body = (pr.get("body") or "").strip()
                return {"text": pr["title"] + (f"\n\n{body}" if body else ""), "source": "github-pull-request",
                        "url": pr.get("html_url")}
        except (OSError, ValueError):
            pass
    msg = git("log", "-1", "--format=%B", rev) if rev else None
    if msg and msg.strip():
        return {"text": msg.strip(), "source": f"git commit {rev[:12]}"}  # type: ignore[index]
    return {"text": None, "source": None,
            "note": "not given: pass --purpose TEXT (or run in a pull request / a checkout with the commit)"}


def commits(git: GitFn, old: str | None, new: str | None) -> dict:
    """The commits between the running and the new source revision (`git log old..new`)."""
    repo = github_repo(git("remote", "get-url", "origin"))
    out: dict = {"from": old, "to": new, "repository": repo, "commits": [], "error": None,
                 "compare_url": f"{repo}/compare/{old}...{new}" if repo and old and new and old != new else None}
    if not new:
        out["error"] = "could not read the diff: the new deploy has no git revision recorded"
        return out
    if not old:
        out["error"] = "could not read the diff: nothing runs yet (or it has no git revision recorded)"
        return out
    if old == new:
        return out
    log = git("log", "--no-merges", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s", f"{old}..{new}")
    if log is None:
        out["error"] = (f"could not read git history {old[:12]}..{new[:12]} in this checkout "
                        "(clone with full history, e.g. actions/checkout fetch-depth: 0)")
        return out
    for line in log.splitlines():
        parts = line.split("\x1f")
        if len(parts) != 5:
            continue
        sha, name, email, date, subject = parts
        out["commits"].append({"sha": sha, "author": name, "email": email, "date": date, "subject": subject,
                               "url": f"{repo}/commit/{sha}" if repo else None})
    return out


def commits_by_time(git: GitFn, since: float | None, until: float | None) -> dict:
    """The commits of a repository whose revision the deploys do not record: those on its
    checked-out HEAD committed between the running deploy and the new one (said so in `range_by`)."""
    repo = github_repo(git("remote", "get-url", "origin"))
    out: dict = {"from": iso(since), "to": iso(until), "repository": repo, "commits": [], "error": None,
                 "compare_url": None, "range_by": "time"}
    if since is None or until is None:
        out["error"] = "could not read the diff: nothing runs yet, so there is no time range to list commits in"
        return out
    log = git("log", "--no-merges", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s", f"--since=@{int(since)}",
              f"--until=@{int(until)}", "HEAD")
    if log is None:
        out["error"] = "could not read git history in this checkout (is it a clone with full history?)"
        return out
    for line in log.splitlines():
        parts = line.split("\x1f")
        if len(parts) == 5:
            sha, name, email, date, subject = parts
            out["commits"].append({"sha": sha, "author": name, "email": email, "date": date, "subject": subject,
                                   "url": f"{repo}/commit/{sha}" if repo else None})
    return out


def repo_diffs(repos: list[tuple[str, GitFn]], new: Record, running: Record | None) -> list[dict]:
    """One diff block per repository: the first by the git revisions the deploys record; the others
    by their revisions in the deploy records' `repos` when recorded, else by time."""
    out = []
    new_sha, old_sha = (new.actor or {}).get("git_sha"), ((running.actor or {}).get("git_sha") if running else None)
    for i, (name, git) in enumerate(repos):
        new_rev = (new.data.get("repos") or {}).get(name)
        old_rev = ((running.data.get("repos") or {}).get(name)) if running else None
        if i == 0:
            block = {**commits(git, old_sha, new_sha), "range_by": "revision"}
        elif new_rev and old_rev:
            block = {**commits(git, old_rev, new_rev), "range_by": "revision"}
        else:
            block = commits_by_time(git, running.created if running else None, new.created)
        out.append({"name": name, **block})
    return out


def junit_summary(path: str) -> dict:
    """Totals and failing cases of a JUnit XML report (pytest, `pt test`, most runners)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise UsageError(f"--junit {path}: cannot read a JUnit XML report ({e})",
                         "pass the file written by `pytest --junitxml FILE`") from None
    suites = [root] if root.tag == "testsuite" else root.findall(".//testsuite")
    if root.tag not in ("testsuite", "testsuites"):
        raise UsageError(f"--junit {path}: root element is <{root.tag}>, not <testsuites>/<testsuite>")
    tot = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    t = 0.0
    failing: list[str] = []
    for s in suites:
        for k in tot:
            tot[k] += int(float(s.get(k, 0) or 0))
        t += float(s.get("time", 0) or 0)
        for case in s.findall("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failing.append(f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":"))
    passed = tot["tests"] - tot["failures"] - tot["errors"] - tot["skipped"]
    return {**tot, "passed": passed, "time": round(t, 3), "failing": failing[:20],
            "ok": tot["failures"] == 0 and tot["errors"] == 0 and tot["tests"] > 0}


_OPS = {"GreaterThanOrEqualToThreshold": ">=", "GreaterThanThreshold": ">", "LessThanThreshold": "<",
        "LessThanOrEqualToThreshold": "<=", "LessThanLowerOrGreaterThanUpperThreshold": "outside band",
        "LessThanLowerThreshold": "< lower band", "GreaterThanUpperThreshold": "> upper band"}


def alarms(cloudwatch: Any, patterns: list[str]) -> dict:
    """The stage's gate alarms with thresholds, as rollback conditions. Fails closed."""
    from pipeline_tools.release import gate

    out: dict = {"patterns": patterns, "read": False, "alarms": [], "error": None}
    if not patterns:
        out["error"] = "the stage's gate names no alarms (gate.alarms): there is no automatic rollback condition"
        return out
    try:
        found = gate.read_alarms(cloudwatch, patterns)
    except Exception as e:
        from pipeline_tools.core.errors import translate

        err = translate(e)
        out["error"] = f"could not read the alarms ({err.message if err else f'{type(e).__name__}: {e}'})"
        return out
    out["read"] = True
    for a in found:
        cond = (f"{_OPS.get(a.comparison or '', a.comparison)} {a.threshold:g}" if a.threshold is not None
                else "composite rule" if a.kind == "CompositeAlarm" else "-")
        out["alarms"].append({"name": a.name, "kind": a.kind, "state": a.state, "rollback_when": cond})
    if not found:
        out["error"] = f"no alarm matches {', '.join(patterns)}: the gate would fail closed"
    return out


def dashboards(cfg: Config, stage: str) -> list[dict]:
    from pipeline_tools.core import names

    region = cfg.stage_region(stage)
    base = f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
    name = names.dashboard_name(cfg.project, stage)
    prefix = names.alarm_name(cfg.project, stage, "", "").rstrip("-")
    return [{"name": name, "url": f"{base}#dashboards/dashboard/{name}"},
            {"name": f"alarms {prefix}-*", "url": f"{base}#alarmsV2:?~(search~'{prefix})"}]


def window(cfg: Config, stage: str, now: float) -> dict:
    w = cfg.stages[stage].window
    if w is None:
        return {"window": None, "open_now": True, "next_open": None, "note": "no deploy window: any time"}
    dt = datetime.fromtimestamp(now, UTC)
    open_now = windows.is_open(w, dt)
    return {"window": windows.describe(w), "open_now": open_now,
            "next_open": None if open_now else windows.next_open(w, dt).isoformat().replace("+00:00", "Z")}


# --- the record --------------------------------------------------------------------------------------


def _running_before(ledger: Ledger, stage: str, rec: Record) -> Record | None:
    found = ledger.query(stage, DEPLOY, state="succeeded", limit=1,
                         where=lambda r: r.created < rec.created and r.data.get("operation", "deploy") == "deploy")
    return found[0] if found else None


def _gate(ledger: Ledger, stage: str, deploy_id: str) -> dict | None:
    from pipeline_tools.release.promote import GATE

    got = ledger.query(stage, GATE, limit=1, where=lambda g: g.data.get("deploy_id") == deploy_id)
    if not got:
        return None
    g = got[0]
    return {"record": g.id, "stage": stage, "deploy_id": deploy_id, "status": g.data.get("status"),
            "at": iso(g.created), "explanation": g.data.get("explanation")}


def _end_state(cfg: Config, stage: str, new: Record, running: Record | None, plan: dict | None) -> dict:
    from pipeline_tools.release import schedule

    st = cfg.stages[stage]
    if plan:
        steps = [s.get("percent") for s in plan.get("steps", [])]
        fns = [{"function": f["function"], "name": f["name"], "from_version": f.get("previous_version"),
                "from_digest": f.get("previous_digest"), "changes": f.get("changes", True)}
               for f in plan.get("functions", [])]
        strategy, bake = plan.get("strategy"), plan.get("bake")
    else:
        strategy, bake = st.deploy.strategy, st.deploy.bake
        percent = st.deploy.percent or (10 if strategy == "canary" else 25 if strategy == "linear" else None)
        steps = [s.percent for s in schedule.steps(strategy, percent, st.deploy.interval)]
        image = new.data.get("image") or next(iter(cfg.images))
        cur = (running.data.get("functions") or {}) if running else {}
        fns = [{"function": fn, "name": cfg.function_name(stage, fn),
                "from_version": (cur.get(fn) or {}).get("version"), "from_digest": running.digest if running else None,
                "changes": not running or running.digest != new.digest}
               for fn in sorted(cfg.functions_for_image(image))]
    return {"digest": new.digest, "image": new.data.get("image"), "strategy": strategy, "traffic_steps": steps,
            "bake": bake, "shadow": False, "functions": fns,
            "alias": "live", "result": f"Every function's alias `live` serves {short(new.digest)} at 100 %"}


def build(cfg: Config, stage: str, *, ledger: Ledger, cloudwatch: Any, clock: Callable[[], float],
          deploy_id: str | None = None, purpose_text: str | None = None, junit: str | None = None,
          env: Mapping[str, str] | None = None, git: GitFn | None = None,
          repos: list[tuple[str, GitFn]] | None = None) -> dict:
    """The change record of deploy `deploy_id` in `stage`, or (None) of the next promotion to `stage`.
    `repos` (name, git) of `change_record.repos`: with more than one, the diff has a block each."""
    from pipeline_tools.release import promote

    cfg.stage(stage)
    env = {} if env is None else env
    git = git or git_in(None)
    now = clock()
    src = cfg.stages[stage].promote_from
    if deploy_id:
        new = ledger.get(stage, deploy_id)
        if new is None or new.kind != DEPLOY:
            raise UsageError(f"no deploy {deploy_id} in stage {stage}", f"list them with `pt history --stage {stage}`")
        running = _running_before(ledger, stage, new)
        source_rec = None
        if src:
            got = ledger.query(src, DEPLOY, state="succeeded", limit=1, where=lambda r: r.digest == new.digest)
            source_rec = got[0] if got else None
        subject = {"type": "deploy", "deploy_id": new.id, "state": new.state, "operation":
                   new.data.get("operation", "deploy"), "at": iso(new.created), "by": (new.actor or {}).get("name"),
                   "source_stage": src, "source_deploy": source_rec.id if source_rec else None}
        plan = new.data.get("plan")
        gate = _gate(ledger, stage, new.id) or (_gate(ledger, src, source_rec.id) if source_rec and src else None)
    else:
        try:
            cand = promote.candidate(cfg, ledger, stage)
        except PtError as e:
            raise type(e)(f"no change record for the next promotion to {stage}: {e.message}", e.hint,
                          exit_code=e.exit_code) from None
        new = source_rec = cand.deploy
        running = ledger.last_succeeded(stage)
        subject = {"type": "promotion", "deploy_id": None, "state": "planned", "operation": "promote",
                   "at": None, "by": None, "source_stage": cand.source, "source_deploy": new.id}
        plan = None
        gate = _gate(ledger, cand.source, new.id)
    new_sha, old_sha = (new.actor or {}).get("git_sha"), ((running.actor or {}).get("git_sha") if running else None)
    if repos and len(repos) > 1:
        git = repos[0][1]

    if running is not None:
        rollback = {"command": f"pt rollback --stage {stage} --to {running.id}", "to_deploy": running.id,
                    "to_digest": running.digest,
                    "note": f"points every function's alias back to the versions of deploy {running.id}; "
                            "pt deploy/promote also roll back by themselves when a gate alarm fires"}
    else:
        rollback = {"command": None, "to_deploy": None, "to_digest": None,
                    "note": f"nothing succeeded in {stage} before: there is no earlier deploy to roll back to"}

    appr: dict = {"required": 0, "two_person_rule": False, "satisfied": True,
                  "explain": f"{stage} requires no approvals"}
    rule = cfg.stages[stage].approvals
    if rule is not None:
        if source_rec is not None and src:
            st = promote.approval_status(cfg, ledger, promote.Candidate(stage, src, source_rec))
            appr = {**st.to_dict(), "satisfied": st.satisfied, "explain": st.explain()}
        else:
            appr = {"required": rule.required, "two_person_rule": rule.two_person_rule, "satisfied": False,
                    "explain": "could not read the approvals: the source deploy of this digest is not in the ledger"}

    doc = {
        "schema": SCHEMA, "kind": "change-record", "generated_at": iso(now), "project": cfg.project, "stage": stage,
        "subject": subject,
        "change": {"digest": new.digest, "image": new.data.get("image"), "image_uri": new.data.get("image_uri"),
                   "git_sha": new_sha, "author": (new.actor or {}).get("author"),
                   "running_digest": running.digest if running else None,
                   "running_deploy": running.id if running else None, "running_git_sha": old_sha},
        "purpose": purpose(purpose_text, env, git, new_sha),
        "diff": commits(git, old_sha, new_sha),
        "end_state": _end_state(cfg, stage, new, running, plan),
        "window": window(cfg, stage, now),
        "dashboards": dashboards(cfg, stage),
        "alarms": alarms(cloudwatch, list(cfg.gate_patterns(stage))),
        "rollback": rollback,
        "approvals": appr,
        "evidence": {"junit": junit_summary(junit) if junit else None,
                     "gate": gate, "gate_note": None if gate else "no gate verdict recorded for this digest yet"},
    }
    if repos and len(repos) > 1:
        doc["diffs"] = repo_diffs(repos, new, running)
    return doc


def _dur(seconds: Any) -> str:
    from pipeline_tools.core.config import format_duration

    return format_duration(float(seconds)) if isinstance(seconds, int | float) else "?"


# --- markdown ------------------------------------------------------------------------------------------


def _diff_block(d: dict) -> list[str]:
    from pipeline_tools.core.output import markdown_table

    if d["error"]:
        return [f"**{d['error']}**", ""]
    if not d["commits"]:
        return ["No commits between the running and the new revision.", ""]
    rows = [[f"[{x['sha'][:12]}]({x['url']})" if x["url"] else x["sha"][:12], x["author"], x["date"], x["subject"]]
            for x in d["commits"]]
    out = [markdown_table(rows, ["commit", "author", "date", "subject"]), ""]
    if d.get("compare_url"):
        out += [f"Compare: {d['compare_url']}", ""]
    return out


def render_md(doc: dict) -> str:
    from pipeline_tools.core.output import markdown_table

    s, c = doc["subject"], doc["change"]
    what = (f"deploy `{s['deploy_id']}` ({s['operation']}, {s['state']})" if s["type"] == "deploy"
            else f"promotion from {s['source_stage']} (deploy `{s['source_deploy']}`)")
    out = [f"# Change record: {doc['project']} {doc['stage']}", "",
           f"{what}; generated {doc['generated_at']} (schema {doc['schema']}).", ""]
    p = doc["purpose"]
    out += ["## Purpose", "", p["text"] if p["text"] else f"_{p['note']}_", ""]
    if p.get("source"):
        out += [f"_source: {p['source']}_", ""]
    out += ["## Change", "",
            f"- new: `{c['digest']}` ({c['image'] or '?'}), git `{c['git_sha'] or '?'}`, author {c['author'] or '?'}",
            "- running: " + (f"`{c['running_digest']}` (deploy `{c['running_deploy']}`), git "
                              f"`{c['running_git_sha'] or '?'}`" if c["running_deploy"] else "nothing yet"), ""]
    out += ["## Diff (commits)", ""]
    if doc.get("diffs"):
        for block in doc["diffs"]:
            how = ("commits on its checked-out HEAD between the running deploy and the new one "
                   f"({block['from']} .. {block['to']})" if block.get("range_by") == "time"
                   else "between the running and the new revision")
            out += [f"### {block['name']}", "", f"_{how}_", ""] + _diff_block(block)
    else:
        out += _diff_block(doc["diff"])
    e = doc["end_state"]
    out += ["## Expected end state", "", e["result"] + ".",
            f"Strategy {e['strategy']}: traffic " + " → ".join(f"{p_}%" for p_ in e["traffic_steps"])
            + f", then bake {_dur(e['bake'])} under the gate; shadow: {'yes' if e['shadow'] else 'no'}.", ""]
    out += [markdown_table([[f["name"], f["from_version"] or "-", short(f["from_digest"]),
                             "new version" if f["changes"] else "unchanged"] for f in e["functions"]],
                           ["function", "live version now", "runs now", "after"]), ""]
    w = doc["window"]
    out += ["## Deploy window", "",
            (f"{w['window']}: " + ("open now." if w["open_now"] else f"closed now; opens {w['next_open']}."))
            if w["window"] else w["note"] + ".", ""]
    out += ["## Dashboards", ""] + [f"- [{x['name']}]({x['url']})" for x in doc["dashboards"]] + [""]
    a = doc["alarms"]
    out += ["## Rollback conditions (alarms)", ""]
    if a["error"]:
        out += [f"**{a['error']}**", ""]
    if a["alarms"]:
        out += [markdown_table([[x["name"], x["kind"], x["state"], x["rollback_when"]] for x in a["alarms"]],
                               ["alarm", "kind", "state now", "rolls back when"]), ""]
    r = doc["rollback"]
    out += ["## Rollback procedure", ""]
    out += ([f"```\n{r['command']}\n```", ""] if r["command"] else []) + [r["note"] + ".", ""]
    ap = doc["approvals"]
    out += ["## Approvals", "",
            f"{'satisfied' if ap['satisfied'] else 'NOT satisfied'}: {ap['explain']}"
            + (f" (two-person rule: {'on' if ap.get('two_person_rule') else 'off'})" if ap.get("required") else ""), ""]
    ev = doc["evidence"]
    out += ["## Test evidence", ""]
    j = ev["junit"]
    if j:
        out += [f"- tests: {j['tests']} run, {j['passed']} passed, {j['failures']} failed, {j['errors']} errors, "
                f"{j['skipped']} skipped ({j['time']:g}s)" + ("" if j["ok"] else " — **NOT OK**")]
        out += [f"  - failing: {f}" for f in j["failing"]]
    else:
        out += ["- tests: no JUnit report given (--junit FILE)"]
    g = ev["gate"]
    out += [f"- gate: {g['status']} for deploy `{g['deploy_id']}` in {g['stage']} at {g['at']}: {g['explanation']}"
            if g else f"- gate: {ev['gate_note']}"]
    return "\n".join(out) + "\n"


# --- publishing where approvers look ----------------------------------------------------------------

PUBLISH_PREFIX = "change-records"


def publish_key(stage: str, name: str) -> str:
    """`change-records/<stage>/<name>` (name: `<deploy id>.md`, `next.json`, `latest.md`, …)."""
    from pipeline_tools.core import keys

    return keys.join(PUBLISH_PREFIX, stage, name)


def console_url(bucket: str, key: str, region: str) -> str:
    """The S3 console page of one object (what a CodePipeline approval links to)."""
    from urllib.parse import quote

    return (f"https://{region}.console.aws.amazon.com/s3/object/{bucket}?region={region}"
            f"&bucketType=general&prefix={quote(key, safe='/')}")


def latest_url(cfg: Config, stage: str) -> str:
    """The stable link to a stage's newest published change record (`latest.md`)."""
    return console_url(cfg.bucket(stage), publish_key(stage, "latest.md"), cfg.stage_region(stage))


def publish(s3: Any, cfg: Config, stage: str, doc: dict, md: str) -> dict:
    """Write the record as `<deploy or next>.md` and `.json`, then `latest.md`, to the stage's
    artifacts bucket. Returns the keys written and the console URLs (of `<name>.md` and latest)."""
    from pipeline_tools.core.output import redact

    bucket = cfg.bucket(stage)
    name = doc["subject"]["deploy_id"] or "next"
    md = redact(md)
    body_json = redact(json.dumps(doc, indent=2) + "\n")
    written = []
    meta = {"pt-kind": "change-record", "pt-digest": str(doc["change"]["digest"] or "")}
    for key, body, ctype in ((publish_key(stage, f"{name}.md"), md, "text/markdown; charset=utf-8"),
                             (publish_key(stage, f"{name}.json"), body_json, "application/json"),
                             (publish_key(stage, "latest.md"), md, "text/markdown; charset=utf-8")):
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType=ctype, Metadata=meta,
                      ChecksumAlgorithm="SHA256")
        written.append(key)
    region = cfg.stage_region(stage)
    return {"bucket": bucket, "keys": written, "url": console_url(bucket, written[0], region),
            "latest_url": console_url(bucket, written[2], region)}
