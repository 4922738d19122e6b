"""YAML with positions and tags, on libyaml.

``parse(text)`` returns plain Python values in which every mapping is a ``Mapping`` (a ``dict``
that knows its own line and the line of each key). Beyond YAML 1.1's safe subset it:

* rejects duplicate keys (merge keys ``<<`` may still be overridden, as YAML intends);
* understands ``!append`` / ``!prepend`` (lists), ``!replace`` (a mapping), ``!delete`` and
  ``!secret NAME``;
* refuses alias bombs (documents whose aliases expand past ``MAX_EXPANDED_NODES``);
* keeps dates as strings and reads only ``true``/``false`` as booleans (YAML 1.2), so
  ``country: no`` stays a string.

Size, encoding and symlink checks happen before parsing, in ``loading.source``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import yaml

MAX_EXPANDED_NODES = 100_000
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(Exception):
    """A document that cannot be loaded; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class Mapping(dict[str, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.line, self.key_lines, dict(self)))

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


def _rebuild(
    cls: type[Mapping], line: int, key_lines: dict[str, int], items: dict[str, Any]
) -> Mapping:
    new = cls(line)
    new.key_lines = key_lines
    new.update(items)
    return new


class Replace(Mapping):
    """``!replace {..}``: replaces the lower layers' mapping instead of merging into it."""

    __slots__ = ()


class Append(list[Any]):
    """``!append [..]``: items added after the lower layers' list."""


class Prepend(list[Any]):
    """``!prepend [..]``: items added before the lower layers' list."""


class DeleteType:
    """``!delete``: removes the key from the lower layers."""

    _instance: ClassVar[DeleteType | None] = None

    def __new__(cls) -> DeleteType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "DELETE"

    def __repr__(self) -> str:
        return "!delete"


DELETE = DeleteType()


class SecretRef(str):
    """``!secret NAME``: a reference to a secret, by name. Its text is the name, never a value;
    every renderer shows it as ``***``."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"SecretRef({self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (SecretRef, (str.__str__(self),))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Loader(yaml.CSafeLoader):
    """libyaml's parser with our constructors and resolvers (registered below)."""

    def construct_ours(self, node: yaml.MappingNode) -> Mapping:
        return self._fill(Mapping(_line(node)), node)

    def _fill(self, mapping: Mapping, node: yaml.MappingNode) -> Mapping:
        if not isinstance(node, yaml.MappingNode):
            raise YamlError(_line(node), f"expected a mapping, found {_kind(node)}")
        pairs = node.value
        if any(key_node.tag == _MERGE_TAG for key_node, _ in pairs):
            return self._fill_with_merge(mapping, node)
        key_lines = mapping.key_lines
        construct = self.construct_object
        for key_node, value_node in pairs:
            key = self._key(key_node)
            line = key_node.start_mark.line + 1
            if key in key_lines:
                raise YamlError(
                    line, f"duplicate key {key!r} (first defined at line {key_lines[key]})"
                )
            key_lines[key] = line
            mapping[key] = construct(value_node, deep=True)
        return mapping

    def _key(self, key_node: yaml.Node) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlError(_line(key_node), "a mapping key must be a scalar")
        key = self.construct_object(key_node)
        if isinstance(key, str):
            return key
        if key is None:
            return "null"
        return str(key).lower() if isinstance(key, bool) else str(key)

    def _fill_with_merge(self, mapping: Mapping, node: yaml.MappingNode) -> Mapping:
        """``<<`` merge keys: explicit keys must be unique, and win over merged ones."""
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node)
            if key in seen:
                raise YamlError(
                    _line(key_node), f"duplicate key {key!r} (first defined at line {seen[key]})"
                )
            seen[key] = _line(key_node)
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self._key(key_node)
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = _line(key_node)
        return mapping

    def construct_sequence_plain(self, node: yaml.Node) -> list[Any]:
        if not isinstance(node, yaml.SequenceNode):
            raise YamlError(_line(node), f"expected a list, found {_kind(node)}")
        items = []
        for child in node.value:
            value = self.construct_object(child, deep=True)
            if value is DELETE or isinstance(value, Append | Prepend | Replace):
                tag = "!delete" if value is DELETE else child.tag
                raise YamlError(
                    _line(child), f"{tag} is only allowed as the value of a mapping key"
                )
            items.append(value)
        return items


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Mapping:
    return loader.construct_ours(node)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> list[Any]:
    return loader.construct_sequence_plain(node)


def _construct_append(loader: _Loader, node: yaml.Node) -> Append:
    if not isinstance(node, yaml.SequenceNode):
        raise YamlError(_line(node), f"!append needs a list, found {_kind(node)}")
    return Append(loader.construct_sequence_plain(node))


def _construct_prepend(loader: _Loader, node: yaml.Node) -> Prepend:
    if not isinstance(node, yaml.SequenceNode):
        raise YamlError(_line(node), f"!prepend needs a list, found {_kind(node)}")
    return Prepend(loader.construct_sequence_plain(node))


def _construct_replace(loader: _Loader, node: yaml.Node) -> Replace:
    if not isinstance(node, yaml.MappingNode):
        raise YamlError(_line(node), f"!replace needs a mapping, found {_kind(node)}")
    replace = Replace(_line(node))
    loader._fill(replace, node)
    return replace


def _construct_delete(loader: _Loader, node: yaml.Node) -> DeleteType:
    if not isinstance(node, yaml.ScalarNode) or node.value not in ("", "~", "null"):
        raise YamlError(_line(node), "!delete takes no value")
    return DELETE


def _construct_secret(loader: _Loader, node: yaml.Node) -> SecretRef:
    if not isinstance(node, yaml.ScalarNode) or not SECRET_NAME.match(str(node.value)):
        raise YamlError(_line(node), "!secret needs a secret name matching [A-Za-z_][A-Za-z0-9_]*")
    return SecretRef(node.value)


def _construct_unknown(loader: _Loader, suffix: str, node: yaml.Node) -> Any:
    raise YamlError(_line(node), f"unknown tag {node.tag}")


def _string(loader: _Loader, node: yaml.ScalarNode) -> str:
    return str(node.value)


def _int(loader: _Loader, node: yaml.ScalarNode) -> int:
    """YAML 1.2 integers: ``017`` is seventeen, ``0o17`` is octal."""
    text = str(node.value)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


# JSON-compatible values only: no !!binary, !!set, !!omap or !!pairs.
_Loader.yaml_constructors = {
    tag: constructor
    for tag, constructor in yaml.SafeLoader.yaml_constructors.items()
    if tag is not None and tag.rsplit(":", 1)[-1] in ("null", "bool", "int", "float", "str")
}
_Loader.yaml_multi_constructors = {}
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _string)
_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("!append", _construct_append)
_Loader.add_constructor("!prepend", _construct_prepend)
_Loader.add_constructor("!replace", _construct_replace)
_Loader.add_constructor("!delete", _construct_delete)
_Loader.add_constructor("!secret", _construct_secret)
_Loader.add_multi_constructor("", _construct_unknown)

# YAML 1.2 booleans and no implicit timestamps; everything else as YAML 1.1's safe resolver.
_Loader.yaml_implicit_resolvers = {}
for _first, _resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items():
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, regexp)
        for tag, regexp in _resolvers
        if tag
        not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int")
    ]
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded (shared nodes counted each
    time they are referenced), computed without expanding anything."""
    memo: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = MAX_EXPANDED_NODES + 1  # a node that reaches itself is a bomb too
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        memo[key] = min(total, MAX_EXPANDED_NODES + 1)
        return memo[key]

    return size(root)


def parse(text: str) -> Any:
    """Parse one YAML document (an empty document is ``None``)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if "*" in text and _expanded_size(node) > MAX_EXPANDED_NODES:
            raise YamlError(
                _line(node),
                f"aliases expand to more than {MAX_EXPANDED_NODES} nodes (an alias bomb?)",
            )
        return loader.construct_document(node)
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and mark is not None and mark.line >= text.count("\n"):
            mark = exc.context_mark  # ran into the end: point at what was left open
        line = int(mark.line) + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise YamlError(line, f"YAML syntax error: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise YamlError(0, f"YAML error: {exc}") from None
    except RecursionError:
        raise YamlError(0, "YAML nesting too deep") from None
    finally:
        loader.dispose()
