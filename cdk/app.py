"""CDK app: every stack for pipeline.yml (`npx cdk synth` from the repository root).

Config path: context `config` (-c config=path), else $PT_CONFIG, else ./pipeline.yml, else the
context `default_config` (this repository's cdk.json points it at examples/iris/pipeline.yml).
A bad config prints the loader's one-line `file:line: path: message` errors and exits 2.
cdk-nag AwsSolutions checks run on every synth (a finding fails it); `-c nag=false` skips them.
Other context keys: see pipeline_tools/infra/stacks/__init__.py.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from pipeline_tools.core.config import load
    from pipeline_tools.core.errors import PtError
    from pipeline_tools.infra.stacks import FEATURE_FLAGS, silence_node_warnings

    silence_node_warnings()
    try:
        import aws_cdk as cdk

        app = cdk.App(context=FEATURE_FLAGS)
        ctx = app.node.try_get_context
        path = ctx("config") or os.environ.get("PT_CONFIG")
        if not path:
            path = "pipeline.yml" if os.path.exists("pipeline.yml") else ctx("default_config") or "pipeline.yml"
        cfg = load(path)
        from pipeline_tools.infra.stacks import build_app, parse_digests

        stages = [s.strip() for s in str(ctx("stages") or "").split(",") if s.strip()] or None
        for s in stages or []:
            cfg.stage(s)
        stacks = build_app(app, cfg, repository=ctx("github_repository"), connection_arn=ctx("connection_arn"),
                           image_digests=parse_digests(ctx("image_digests")), stages=stages,
                           oidc_provider_arn=ctx("oidc_provider_arn"))
        if str(ctx("nag") if ctx("nag") is not None else "true").lower() not in ("false", "0", "no", "off"):
            from cdk_nag import AwsSolutionsChecks

            # cdk-nag 3 is a policy-validation plugin (not an aspect): findings fail the synth.
            cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    except PtError as e:
        for line in e.lines():
            print(f"error: {line}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    if not any(name.endswith("-pipeline") for name in stacks):
        print("note: pipeline stacks skipped: set cdk.github_repository and cdk.connection_arn in "
              f"{path} (or -c github_repository=OWNER/NAME -c connection_arn=ARN)", file=sys.stderr)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
