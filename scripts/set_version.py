#!/usr/bin/env python3
"""Release step: write the version of a release tag into pipeline_tools/__init__.py (setup.cfg reads it
from there), so the wheel, the sdist, the toolkit image and `pt --version` all carry the tag's version.

    python scripts/set_version.py v1.2.3           # writes 1.2.3, prints it
    python scripts/set_version.py --check v1.2.3   # exit 1 unless the package already says 1.2.3
    python scripts/set_version.py --source "$GITHUB_REPOSITORY@$GITHUB_SHA" "$GITHUB_REF_NAME"
        # also records the commit, the default pin of `pt init` / `pt upgrade-pipelines`

Exit codes: 0 written/matching, 1 mismatch (--check), 2 the tag is not vMAJOR.MINOR.PATCH[{a,b,rc}N].
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

INIT = Path(__file__).resolve().parent.parent / "pipeline_tools" / "__init__.py"
TAG = re.compile(r"v(?P<version>(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)((a|b|rc)(0|[1-9]\d*))?)")
LINE = re.compile(r'^__version__ = "([^"]*)"$', re.M)
SOURCE_LINE = re.compile(r'^__toolkit_ref__ = "([^"]*)"$', re.M)
SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}@[0-9a-f]{40}")


def version_from_tag(tag: str) -> str:
    m = TAG.fullmatch(tag.strip())
    if not m:
        raise ValueError(f"tag {tag!r} is not a release tag: expected vMAJOR.MINOR.PATCH (e.g. v1.2.3 or v1.2.3rc1)")
    return m["version"]


def current_version(init: Path = INIT) -> str:
    m = LINE.search(init.read_text(encoding="utf-8"))
    if not m:
        raise ValueError(f"{init}: no line `__version__ = \"…\"`")
    return m[1]


def write_version(version: str, init: Path = INIT, source: str | None = None) -> None:
    text = init.read_text(encoding="utf-8")
    new, n = LINE.subn(f'__version__ = "{version}"', text)
    if n != 1:
        raise ValueError(f"{init}: expected exactly one line `__version__ = \"…\"`, found {n}")
    if source is not None:
        if not SOURCE.fullmatch(source):
            raise ValueError(f"--source {source!r}: expected OWNER/REPO@<40-hex commit SHA>")
        new, n = SOURCE_LINE.subn(f'__toolkit_ref__ = "{source}"', new)
        if n != 1:
            raise ValueError(f"{init}: expected exactly one line `__toolkit_ref__ = \"…\"`, found {n}")
    init.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tag", help="the release tag, e.g. v1.2.3 (in GitHub Actions: $GITHUB_REF_NAME)")
    ap.add_argument("--check", action="store_true", help="only compare: exit 1 if the package version differs")
    ap.add_argument("--source", help="OWNER/REPO@SHA the release is built from "
                                     "(GitHub: $GITHUB_REPOSITORY@$GITHUB_SHA)")
    ap.add_argument("--init", type=Path, default=INIT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        version = version_from_tag(args.tag)
        if args.check:
            have = current_version(args.init)
            if have != version:
                print(f"error: {args.init} says {have}, tag {args.tag} says {version}; "
                      f"run `python scripts/set_version.py {args.tag}` before building", file=sys.stderr)
                return 1
        else:
            write_version(version, args.init, args.source)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
