"""Reading a config file: YAML with a safe loader, size and alias limits; the override; deep merge.

Nothing here knows the schema's meaning: :func:`read_yaml` returns the document as plain
values (or raises :class:`~zipkit.ConfigError` naming the file), :func:`parse_override` the
override dict, :func:`merge` the two together.
"""

from __future__ import annotations

import ast
import copy
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ._errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_YAML_VALUES", "merge", "one_line", "parse_override",
           "read_yaml", "type_name"]

log = logging.getLogger("zipkit")

#: The largest config file read, in bytes (1 MiB): the old tool's configs are a few KB.
MAX_CONFIG_BYTES = 1 << 20
#: The most values a config may hold once its YAML aliases (``*name``) are expanded.
MAX_YAML_VALUES = 100_000


class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (libyaml's parser when installed) that logs duplicate keys (the last one
    wins, as in the old tool)."""


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str) and key in seen:
            log.warning("config: key %r appears twice (line %d); the last one is used",
                        key, key_node.start_mark.line + 1)
        if isinstance(key, str):
            seen.add(key)
    mapping: dict[Any, Any] = yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)
    return mapping


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def one_line(text: object, limit: int = 200) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _yaml_error(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    if isinstance(e, yaml.constructor.ConstructorError):
        m = re.search(r"tag '([^']*)'", problem)
        if m:
            tag = m.group(1).replace("tag:yaml.org,2002:", "!!")
            return (f"YAML tag '{tag}'{where} refused: configs are read with a safe loader, "
                    f"which builds no Python objects and runs no code")
    return f"not valid YAML: {one_line(problem)}{where}"


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse a node graph that aliases expand past :data:`MAX_YAML_VALUES`, or that holds itself.

    Aliases share nodes, so nine aliases of nine aliases … are a few lines that expand to
    billions of values (a "billion laughs"); sizes are summed per shared node, never expanded.
    """
    size: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes on the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        k = id(node)
        value = node.value if isinstance(node, yaml.CollectionNode) else ()
        kids = [n for pair in value for n in pair] if isinstance(node, yaml.MappingNode) else value
        if children_done:
            open_nodes.discard(k)
            size[k] = 1 + sum(size[id(c)] for c in kids)
            if size[k] > MAX_YAML_VALUES:
                raise ConfigError(
                    f"the YAML holds more than {MAX_YAML_VALUES} values once its aliases (*name) are "
                    f"expanded (an alias bomb?); a zipkit config holds a few dozen", path=path)
            continue
        if k in size:
            continue
        if k in open_nodes:
            raise ConfigError(f"a YAML alias (line {node.start_mark.line + 1}) refers to a node that "
                              f"holds it: a config cannot contain itself", path=path)
        open_nodes.add(k)
        stack.append((node, True))
        stack.extend((c, False) for c in kids if id(c) not in size)


def _load_yaml(text: str, path: Path) -> Any:
    """The document in ``text``, built only after :func:`_check_expansion` passed."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in the config file ``path``, or :class:`~zipkit.ConfigError` naming it."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # never more: a 50 MB file is refused at once
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a config file", path=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read the config file: {e.strerror}", path=path) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the config file is larger than {MAX_CONFIG_BYTES} bytes (1 MiB), the most "
                          f"zipkit reads; a config is a few KB: is this the right file?", path=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", path=path) from None
    try:
        data = _load_yaml(text, path)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(e), path=path) from None
    except RecursionError:
        raise ConfigError("not usable YAML: nested too deeply", path=path) from None
    if data is None:
        raise ConfigError("the config is empty", path=path)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of keys at the top, got {type_name(data)}", path=path)
    return data


def parse_override(text: str | Mapping[str, Any] | None, path: Path) -> dict[str, Any] | None:
    """The override as a dict: a Python literal (``ast.literal_eval``, never ``eval``) or a dict."""
    if text is None:
        return None
    if isinstance(text, Mapping):
        value: Any = dict(text)
    elif isinstance(text, str):
        if not text.strip():
            return None
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            reason = "it holds names, calls or operators, which are never evaluated" \
                if isinstance(e, ValueError) else one_line(getattr(e, "msg", e) or e.__class__.__name__)
            raise ConfigError(
                f"the override is not a Python literal dict ({reason}): {one_line(text, 120)}",
                path=path) from None
    else:
        raise ConfigError(f"the override must be a dict or its text, not {type_name(text)}", path=path)
    if not isinstance(value, dict):
        raise ConfigError(f"the override must be a dict like \"{{'analysis': {{...}}}}\", not "
                          f"{type_name(value)}: {one_line(text, 120)}", path=path)
    return value


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key; any other value replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def type_name(v: object) -> str:
    """``v`` as a message names its type: ``null``, ``a number (3)``, ``text ('x')``, ``a list`` …"""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, (int, float)):
        return f"a number ({v})"
    if isinstance(v, str):
        return f"text ({one_line(repr(v), 60)})"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return f"a {type(v).__name__}"
