"""The local stack's moto server, with Lambda version numbers assigned as AWS assigns them.

moto 5.2 numbers a newly published version `len(versions) + 1`. Once `keep_versions` pruning
has deleted an old version (the deploy engine prunes after every deploy), that reuses a number
still in use: with versions 2..6 left and 6 live, the next publish is numbered 6 again, and
the deploy fails with "publish_version … returned the live version 6: Lambda saw no code
change" although the digest is new. AWS never reuses a number (the next one is one past the
highest ever published), so `pt local up` runs moto through this module, which patches only
that numbering.

- `patch_lambda_versions() -> bool`: patch moto's Lambda storage in this process (idempotent).
- `python -m pipeline_tools.local.motoserver -H HOST -p PORT`: `moto.server` with the patch applied.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

MARK = "_pt_monotonic_versions"


def patch_lambda_versions() -> bool:
    """Make moto's `publish_version` number versions monotonically. False if already patched."""
    from moto.awslambda import models

    storage = models.LambdaStorage
    if getattr(storage.publish_version, MARK, False):
        return False

    def publish_version(self: Any, name_or_arn: str, description: str = "") -> Any:
        function = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
        name = function.function_name
        if name not in self._functions or not self._functions[name]["latest"]:
            return None
        versions = self._functions[name]["versions"]
        if versions:
            if not function.code_or_config_updated:  # nothing changed: AWS returns the newest version
                return max(versions, key=lambda v: int(v.version))
            function.code_or_config_updated = False
        high: dict[str, int] = self.__dict__.setdefault("_pt_high_version", {})
        number = max([high.get(function.function_arn, 0), *(int(v.version) for v in versions)]) + 1
        high[function.function_arn] = number
        fn = copy.copy(self._functions[name]["latest"])
        fn.code = dict(fn.code)  # a version keeps its own Code.ImageUri when $LATEST is updated later
        fn.set_version(number)
        if description:
            fn.description = description
        versions.append(fn)
        self._arns[fn.function_arn] = fn
        return fn

    setattr(publish_version, MARK, True)
    storage.publish_version = publish_version
    return True


def main(argv: list[str] | None = None) -> None:
    patch_lambda_versions()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
