"""Which part of a stage's alarm gate CodePipeline V2 can run itself (stage conditions).

A `CloudWatchAlarm` rule watches alarms by exact name while the pipeline waits, unbilled; a
CodeBuild `pt gate --wait` bills every second of the bake. The rule can stand in for the wait when:
- every gate pattern is an exact alarm name (a rule cannot expand `iris-prod-*`);
- the insufficient-data policy is `fail` (watch INSUFFICIENT_DATA too) or `pass` (ALARM only),
  not `wait`, which has no rule equivalent;
- the alarms live where the pipeline runs (no `accounts:`: a rule reads alarms with the pipeline's
  own role, in its own account).
Then the Deploy/Promote stage gets an onSuccess condition (result ROLLBACK) and the Gate step runs
`pt gate` once, without `--wait`, to record the verdict in the ledger. Otherwise nothing changes.
Pure: no CDK import, so it is tested without synthesizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_WAIT_MINUTES = 60   # the rule's WaitTime range in CodePipeline


@dataclass(frozen=True)
class AlarmRules:
    rules: list[dict[str, Any]]       # name + configuration of each CloudWatchAlarm rule
    reason: str                       # why the rules can (or cannot) stand in for `pt gate --wait`

    @property
    def usable(self) -> bool:
        return bool(self.rules)


def alarm_rules(cfg: Any, stage: str) -> AlarmRules:
    st = cfg.stages[stage]
    patterns = cfg.gate_patterns(stage)
    if getattr(cfg, "accounts", None) is not None:
        return AlarmRules([], "the pipeline runs in the tooling account; the alarms are in the stage's")
    if not patterns:
        return AlarmRules([], "the stage has no gate alarms")
    prefixes = [p for p in patterns if p.endswith("*")]
    if prefixes:
        return AlarmRules([], f"alarm prefixes ({', '.join(prefixes)}) need `pt gate` to expand them")
    if st.gate.insufficient_data == "wait":
        return AlarmRules([], "insufficient_data: wait has no stage-condition equivalent")
    states = "ALARM" if st.gate.insufficient_data == "pass" else "ALARM,INSUFFICIENT_DATA"
    wait = min(MAX_WAIT_MINUTES, max(1, math.ceil(st.deploy.bake / 60)))
    rules = [{"name": f"Alarm{i + 1}", "configuration": {"AlarmName": name, "AlarmStates": states,
                                                         "WaitTime": str(wait)}}
             for i, name in enumerate(patterns)]
    return AlarmRules(rules, f"{len(rules)} alarm(s) watched by the pipeline for {wait} min, then rollback "
                             "on ALARM" + (" or INSUFFICIENT_DATA" if "INSUFFICIENT" in states else ""))
