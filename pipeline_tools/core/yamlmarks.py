"""Load YAML into plain Python data while keeping the line of every value.

`load_with_lines(text)` returns `(data, lines)` where `lines` maps a path tuple such as
`("stages", "prod", "deploy", "strategy")` to the 1-based line of that value (and of its key).
Duplicate keys, which PyYAML silently accepts, are reported as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml


@dataclass
class YamlProblem:
    line: int
    path: tuple
    message: str


@dataclass
class Loaded:
    data: object
    lines: dict[tuple, int] = field(default_factory=dict)
    problems: list[YamlProblem] = field(default_factory=list)


# libyaml's parser (C) when PyYAML was built with it: ~10x faster on a 500-model zoo config;
# the pure-Python one otherwise. Both give nodes with the same marks.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _scalar(loader: _Loader, node: yaml.ScalarNode) -> object:
    return loader.construct_object(node, deep=True)


def _build(loader: _Loader, node: yaml.Node, path: tuple, out: Loaded) -> object:
    out.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or not isinstance(key, str | int | float | bool):
                out.problems.append(YamlProblem(key_node.start_mark.line + 1, path,
                                                "keys must be plain strings"))
                continue
            if isinstance(key, bool | int | float):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in result:
                out.problems.append(YamlProblem(key_node.start_mark.line + 1, path + (key,),
                                                f"duplicate key '{key}' (first on line "
                                                f"{out.lines.get(path + (key,), '?')})"))
                continue
            out.lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, path + (key,), out)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), out) for i, item in enumerate(node.value)]
    return _scalar(loader, node)


def load_with_lines(text: str) -> Loaded:
    """Parse one YAML document. Raises yaml.YAMLError on syntax errors."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        out = Loaded(data=None)
        if node is not None:
            out.data = _build(loader, node, (), out)
        return out
    finally:
        loader.dispose()


def line_for(lines: dict[tuple, int], path: tuple) -> int:
    """Line of `path`, or of its nearest ancestor that exists in the file."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get((), 1)
