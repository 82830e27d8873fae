"""`.dockerignore` semantics: the rules docker documents, and its context-walk shortcut."""

from __future__ import annotations

import pytest

from pipeline_tools.images.buildctx import scan
from pipeline_tools.images.dockerignore import Matcher, clean, parse


def excluded(text: str, path: str) -> bool:
    return Matcher.from_text(text).excluded(path)


@pytest.mark.parametrize("text,path,want", [
    # plain names match at the root only, and everything below a matched directory
    ("foo", "foo", True),
    ("foo", "foo/bar.txt", True),
    ("foo", "a/foo", False),
    # * stays within one path element
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "temp", False),
    ("*/temp*", "a/b/temp", False),
    ("*/*/temp*", "a/b/temp.x", True),
    # ? is one character
    ("temp?", "temp1", True),
    ("temp?", "temp12", False),
    ("temp?", "temp/x", False),
    # ** any number of directories, including none
    ("**/*.go", "main.go", True),
    ("**/*.go", "a/b/c/main.go", True),
    ("**/__pycache__", "pkg/sub/__pycache__/m.pyc", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**", "a/x/y", True),
    ("a/**", "ab", False),
    ("**", "anything/at/all", True),
    # character classes and escapes
    ("file[0-9].txt", "file7.txt", True),
    ("file[0-9].txt", "filex.txt", False),
    ("file[^0-9].txt", "filex.txt", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    # regexp metacharacters are literal
    ("a+b(c).txt", "a+b(c).txt", True),
    ("a.txt", "abtxt", False),
    # cleaned like filepath.Clean; a leading / is dropped
    ("/abs", "abs", True),
    ("./dot/../x", "x", True),
    ("dir/", "dir/f", True),
    # comments and blank lines
    ("# foo\n\n   \nbar", "foo", False),
    ("  spaced  ", "spaced", True),
])
def test_patterns(text, path, want):
    assert excluded(text, path) is want


@pytest.mark.parametrize("text,path,want", [
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    # last match wins: a later pattern excludes again
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-x.md", False),
    # an exception inside an excluded directory
    ("docs\n!docs/keep.txt", "docs/keep.txt", False),
    ("docs\n!docs/keep.txt", "docs/other.txt", True),
    # exception before the exclusion has no effect
    ("!keep.txt\n*.txt", "keep.txt", True),
    # an exception for a directory re-includes what is below it
    ("*\n!src", "src/a/b.py", False),
    ("*\n!src", "other/b.py", True),
])
def test_exceptions(text, path, want):
    assert excluded(text, path) is want


def test_parse_and_clean():
    pats = parse("# c\n!/x/../y\n a/b/ \n!\n")
    assert [(p.text, p.exclusion) for p in pats] == [("y", True), ("a/b", False)]
    assert clean("a//b/./c/..") == "a/b"
    assert clean("../a") == "../a"
    assert clean("") == "."


def test_skip_dir_shortcut_matches_docker():
    m = Matcher.from_text("docs\n!docs/keep.txt")
    assert not m.can_skip_dir("docs")  # an exception starts with docs/: must walk it
    assert m.can_skip_dir("other")
    assert Matcher.from_text("docs").can_skip_dir("docs")
    # docker walks into an excluded dir only for exceptions that start with its path: `**/keep` does not
    assert Matcher.from_text("docs\n!**/keep.txt").can_skip_dir("docs")


def _tree(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_walk_applies_rules(tmp_path):
    _tree(tmp_path, {"Dockerfile": b"FROM scratch\n", "app.py": b"x", "README.md": b"r", "NOTES.md": b"n",
                     "docs/keep.txt": b"k", "docs/drop.txt": b"d", "pkg/__pycache__/m.pyc": b"c",
                     "pkg/m.py": b"m", ".git/HEAD": b"ref"})
    (tmp_path / ".dockerignore").write_text("*.md\n!README.md\ndocs\n!docs/keep.txt\n**/__pycache__\n.git\n")
    ctx = scan(tmp_path, tmp_path / "Dockerfile")
    files = {e.path for e in ctx.entries if e.kind == "f"}
    assert files == {".dockerignore", "Dockerfile", "README.md", "app.py", "docs/keep.txt", "pkg/m.py"}
    # the excluded directory itself is not an entry, its kept file is
    assert "docs" not in {e.path for e in ctx.entries}
    assert "pkg" in {e.path for e in ctx.entries if e.kind == "d"}
