"""Merging property layers (SPEC 2.3): the rules, provenance, and that nothing is mutated.

Layers are YAML text parsed by the real loader, so every line in a provenance is a real line.
The first text given is the lowest layer.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from runner.loading.yamlfile import DELETE, Mapping, SecretRef, YamlError, parse
from runner.model import Layer
from runner.properties.merge import (
    Branch,
    Converged,
    Leaf,
    Provenance,
    merge,
    unwrap,
    wrap,
)

NAMES = ("template", "repo", "project", "environment", "asset", "overrides")
FILES = ("template.yaml", "properties.yaml", "project.yaml", "env.yaml", "asset.yaml", "--set")


def layers(*texts: str) -> list[Layer]:
    """One layer per text, lowest first, named and filed as the runner's layers 1-6."""
    found = []
    for n, text in enumerate(texts):
        values = parse(text)
        values = values if isinstance(values, Mapping) else Mapping(1)  # as loading.build does
        found.append(Layer(NAMES[n], FILES[n], values))
    return found


def converge_layers(found: list[Layer]) -> Converged:
    return unwrap(merge([wrap(layer) for layer in found]))


def converge(*texts: str) -> Converged:
    return converge_layers(layers(*texts))


def prov(n: int, line: int) -> Provenance:
    """Provenance in the ``n``-th layer (0 = lowest)."""
    return Provenance(NAMES[n], FILES[n], line)


def typed(value: Any, exact: bool = True) -> Any:
    """``value`` with the type of everything in it, so that ``1 != True``; ``exact``: a
    left-over ``Append`` or ``Mapping`` shows too."""
    if isinstance(value, dict):
        kind = type(value).__name__ if exact else "dict"
        return (kind, {key: typed(child, exact) for key, child in value.items()})
    if isinstance(value, list):
        kind = type(value).__name__ if exact else "list"
        return (kind, [typed(child, exact) for child in value])
    return (type(value).__name__, value)


def describe_doc(value: Any) -> Any:
    """A parsed document with its types, lines and key lines."""
    if isinstance(value, Mapping):
        return (
            type(value).__name__,
            value.line,
            dict(value.key_lines),
            {key: describe_doc(child) for key, child in value.items()},
        )
    if isinstance(value, list):
        return (type(value).__name__, [describe_doc(child) for child in value])
    return (type(value).__name__, value)


def describe_branch(node: Branch | Leaf) -> Any:
    """A wrapped layer or merge result, provenance and flags included."""
    if isinstance(node, Branch):
        return (
            type(node).__name__,
            node.prov,
            node.marked,
            {key: describe_branch(child) for key, child in node.items()},
        )
    return ("Leaf", node.prov, describe_doc(node.value))


# --- the rules, as a table ---------------------------------------------------------------------

RULES = [
    pytest.param(
        "a: {x: 1, y: 2}\n",
        "a: {y: 3, z: 4}\n",
        {"a": {"x": 1, "y": 3, "z": 4}},
        id="mappings merge key by key",
    ),
    pytest.param(
        "a: {b: {c: 1, d: 1}}\ne: 1\n",
        "a: {b: {d: 2}}\n",
        {"a": {"b": {"c": 1, "d": 2}}, "e": 1},
        id="nested mappings merge all the way down",
    ),
    pytest.param(
        "a: {x: 1}\n",
        "a: {}\n",
        {"a": {"x": 1}},
        id="an empty mapping merges as nothing",
    ),
    pytest.param("a: [1, 2]\n", "a: [3]\n", {"a": [3]}, id="lists replace"),
    pytest.param("a: [1, 2]\n", "a: []\n", {"a": []}, id="an empty list replaces"),
    pytest.param("a: 1\nb: x\n", "a: 2\n", {"a": 2, "b": "x"}, id="scalars replace"),
    pytest.param("a: '1'\n", "a: 1\n", {"a": 1}, id="a scalar replaces one of another type"),
    pytest.param("a: 1\n", "a: ~\n", {"a": None}, id="null replaces a scalar"),
    pytest.param("a: {x: 1}\n", "a: null\n", {"a": None}, id="null replaces a mapping"),
    pytest.param("a: [1]\n", "a:\n", {"a": None}, id="an empty value is null and replaces a list"),
    pytest.param("b: 1\n", "a: ~\n", {"b": 1, "a": None}, id="null is inserted as a value"),
    pytest.param("a: 1\n", "a: {x: 1}\n", {"a": {"x": 1}}, id="a mapping replaces a scalar"),
    pytest.param("a: {x: 1}\n", "a: 1\n", {"a": 1}, id="a scalar replaces a mapping"),
    pytest.param("a: {x: 1}\n", "a: [1]\n", {"a": [1]}, id="a list replaces a mapping"),
    pytest.param("a: [1]\n", "a: {x: 1}\n", {"a": {"x": 1}}, id="a mapping replaces a list"),
    pytest.param("a: [1, 2]\n", "a: !append [3, 4]\n", {"a": [1, 2, 3, 4]}, id="append to a list"),
    pytest.param("a: [1, 2]\n", "a: !prepend [3, 4]\n", {"a": [3, 4, 1, 2]}, id="prepend a list"),
    pytest.param("b: 1\n", "a: !append [3]\n", {"b": 1, "a": [3]}, id="append to nothing"),
    pytest.param("b: 1\n", "a: !prepend [3]\n", {"b": 1, "a": [3]}, id="prepend to nothing"),
    pytest.param("a: [1]\n", "a: !append []\n", {"a": [1]}, id="append nothing"),
    pytest.param(
        "a: {l: [1]}\n",
        "a: {m: 1, l: !append [2]}\n",
        {"a": {"l": [1, 2], "m": 1}},
        id="append inside a merged mapping",
    ),
    pytest.param(
        "b: 1\n",
        "a:\n  x:\n    l: !prepend [1]\n",
        {"b": 1, "a": {"x": {"l": [1]}}},
        id="prepend inside a mapping inserted fresh",
    ),
    pytest.param(
        "a: [{x: 1}]\n",
        "a: !append [{y: 2}]\n",
        {"a": [{"x": 1}, {"y": 2}]},
        id="appended mappings stay list items",
    ),
    pytest.param(
        "a: {x: 1, y: 2}\n",
        "a: !replace {z: 3}\n",
        {"a": {"z": 3}},
        id="replace a mapping instead of merging",
    ),
    pytest.param("b: 1\n", "a: !replace {z: 3}\n", {"b": 1, "a": {"z": 3}}, id="replace nothing"),
    pytest.param("a: 1\n", "a: !replace {z: 3}\n", {"a": {"z": 3}}, id="replace a scalar"),
    pytest.param(
        "a: {x: 1}\n",
        "a: !replace {}\n",
        {"a": {}},
        id="replace with an empty mapping",
    ),
    pytest.param(
        "a: {b: {c: 1}, d: 1}\n",
        "a:\n  b: !replace\n    e: 2\n",
        {"a": {"b": {"e": 2}, "d": 1}},
        id="replace only where tagged",
    ),
    pytest.param(
        "a: {x: 1}\n",
        "a: !replace {x: !delete , y: !append [1], z: {w: !delete ~}}\n",
        {"a": {"y": [1], "z": {}}},
        id="tags inside a replacement resolve against nothing",
    ),
    pytest.param("a: 1\nb: 2\n", "a: !delete\n", {"b": 2}, id="delete removes the key"),
    pytest.param("a: {x: 1}\nb: 2\n", "a: !delete ~\n", {"b": 2}, id="delete removes a mapping"),
    pytest.param("b: 2\n", "a: !delete\n", {"b": 2}, id="deleting a missing key is fine"),
    pytest.param(
        "a: {x: 1, y: 1}\n",
        "a:\n  x: !delete\n",
        {"a": {"y": 1}},
        id="delete inside a merged mapping",
    ),
    pytest.param(
        "a: {x: 1}\n",
        "a:\n  x: !delete\n",
        {"a": {}},
        id="deleting the last key leaves an empty mapping",
    ),
    pytest.param(
        "b: 2\n",
        "a:\n  x: !delete\n  y: 1\n",
        {"b": 2, "a": {"y": 1}},
        id="delete inside a mapping inserted fresh disappears",
    ),
    pytest.param(
        "b: 2\n",
        "a:\n  x:\n    y: !delete\n",
        {"b": 2, "a": {"x": {}}},
        id="delete deep inside a mapping inserted fresh disappears",
    ),
    pytest.param(
        "a: 1\n",
        "a:\n  x: !delete\n  y: 1\n",
        {"a": {"y": 1}},
        id="delete inside a mapping replacing a scalar disappears",
    ),
    pytest.param(
        "a: !secret S\n",
        "b: 1\n",
        {"a": SecretRef("S"), "b": 1},
        id="a secret from below",
    ),
    pytest.param("a: 1\n", "a: !secret S\n", {"a": SecretRef("S")}, id="a secret replaces"),
    pytest.param(
        "a: 1\n",
        "a: {secret: S}\n",
        {"a": SecretRef("S")},
        id="the secret form replaces",
    ),
    pytest.param(
        "a: {x: 1}\n",
        "a: {secret: S}\n",
        {"a": SecretRef("S")},
        id="the secret form replaces a mapping instead of merging into it",
    ),
    pytest.param(
        "a: {secret: S}\n",
        "a: {x: 1}\n",
        {"a": {"x": 1}},
        id="a mapping replaces a secret",
    ),
    pytest.param(
        "a: [1]\n",
        "a: !append [!secret S, {secret: T}]\n",
        {"a": [1, SecretRef("S"), SecretRef("T")]},
        id="secrets appended",
    ),
    pytest.param(
        "b: 1\n",
        "a: [{secret: S}, [{secret: T}]]\n",
        {"b": 1, "a": [SecretRef("S"), [SecretRef("T")]]},
        id="secret forms inside lists",
    ),
    pytest.param(
        "b: 1\n",
        "a: {secret: S, other: 1}\n",
        {"b": 1, "a": {"secret": "S", "other": 1}},
        id="a mapping with more than a secret key is a mapping",
    ),
]


@pytest.mark.parametrize(("lower", "upper", "expected"), RULES)
def test_merge_rules(lower: str, upper: str, expected: dict[str, Any]) -> None:
    assert typed(converge(lower, upper).values) == typed(expected)


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        pytest.param(
            ("a: [1]\n", "a: !append [2]\n", "a: !append [3]\n", "a: !prepend [0]\n"),
            {"a": [0, 1, 2, 3]},
            id="appends and prepends stack",
        ),
        pytest.param(
            ("a: [1]\n", "a: !delete\n", "a: !append [2]\n"),
            {"a": [2]},
            id="append after a delete appends to nothing",
        ),
        pytest.param(
            ("a: {x: 1}\n", "a: !delete\n", "a: {y: 2}\n"),
            {"a": {"y": 2}},
            id="a key deleted below can be set again",
        ),
        pytest.param(
            ("a: {x: 1}\n", "a: 5\n", "a: {y: 2}\n"),
            {"a": {"y": 2}},
            id="a scalar between two mappings cuts the lower one off",
        ),
        pytest.param(
            ("a: 1\n", "a: ~\n", "b: 2\n"),
            {"a": None, "b": 2},
            id="null stays null under a layer that does not mention it",
        ),
        pytest.param(
            ("a: !append [1]\nb: !delete\nc: !replace {d: !delete ~}\n",),
            {"a": [1], "c": {}},
            id="tags in a single layer resolve against nothing",
        ),
    ],
)
def test_merge_rules_across_more_layers(texts: tuple[str, ...], expected: dict[str, Any]) -> None:
    assert typed(converge(*texts).values) == typed(expected)


def test_secrets_come_out_as_references() -> None:
    values = converge(
        "a: !secret A\nb: {secret: B}\nc: [x]\n",
        "c: !append [{secret: C}]\n",
    ).values

    assert values == {"a": "A", "b": "B", "c": ["x", "C"]}
    assert [type(values["a"]), type(values["b"]), type(values["c"][1])] == [SecretRef] * 3
    assert [values["a"].name, values["b"].name, values["c"][1].name] == ["A", "B", "C"]


def test_no_layer_at_all_is_nothing() -> None:
    assert unwrap(merge([])) == Converged({}, {})


# --- provenance ---------------------------------------------------------------------------------


def test_each_leaf_knows_the_layer_file_and_line_that_set_it() -> None:
    result = converge(
        "service:\n"  # 1
        "  name: api\n"  # 2
        "  ports: [80]\n"  # 3
        "  limits:\n"  # 4
        "    cpu: 1\n",  # 5
        "region: eu\n"  # 1
        "service:\n"  # 2
        "  limits:\n"  # 3
        "    memory: 2Gi\n"  # 4
        "  ports: !append [443]\n",  # 5
        "\n"  # 1
        "service:\n"  # 2
        "  name: ~\n",  # 3
    )

    assert result.values == {
        "service": {"name": None, "ports": [80, 443], "limits": {"cpu": 1, "memory": "2Gi"}},
        "region": "eu",
    }
    assert result.provenance == {
        ("service", "name"): prov(2, 3),
        ("service", "ports"): prov(1, 5),
        ("service", "limits", "cpu"): prov(0, 5),
        ("service", "limits", "memory"): prov(1, 4),
        ("region",): prov(1, 1),
    }


def test_an_empty_mapping_is_a_leaf_with_provenance() -> None:
    result = converge(
        "a: {}\n"  # 1
        "b:\n"  # 2
        "  c: {}\n",  # 3
        "d: 1\n"  # 1
        "b:\n"  # 2
        "  c: {}\n",  # 3
    )

    assert result.values == {"a": {}, "b": {"c": {}}, "d": 1}
    assert result.provenance == {
        ("a",): prov(0, 1),
        ("b", "c"): prov(1, 3),
        ("d",): prov(1, 1),
    }


def test_a_mapping_emptied_by_delete_belongs_to_the_deleting_layer() -> None:
    result = converge("a:\n  x: 1\n", "b: 1\na:\n  x: !delete\n")

    assert result.values == {"a": {}, "b": 1}
    assert result.provenance == {("a",): prov(1, 2), ("b",): prov(1, 1)}


def test_replaced_and_replacing_values_belong_to_the_upper_layer() -> None:
    result = converge(
        "a: {x: 1}\nb: 1\nc: {y: 1}\n",
        "a: 2\nb:\n  z: 3\nc: !replace\n  w: 4\n",
    )

    assert result.values == {"a": 2, "b": {"z": 3}, "c": {"w": 4}}
    assert result.provenance == {
        ("a",): prov(1, 1),
        ("b", "z"): prov(1, 3),
        ("c", "w"): prov(1, 5),
    }


def test_provenance_prints_as_layer_and_position() -> None:
    assert str(Provenance("asset", "projects/pay/asset.yaml", 7)) == (
        "asset projects/pay/asset.yaml:7"
    )
    assert str(Provenance("overrides", "--set", 0)) == "overrides --set"


# --- nothing is mutated -----------------------------------------------------------------------


@pytest.mark.parametrize(("lower", "upper", "expected"), RULES)
def test_merging_never_mutates_the_documents_and_repeats_exactly(
    lower: str, upper: str, expected: dict[str, Any]
) -> None:
    found = layers(lower, upper)
    docs_before = [describe_doc(layer.values) for layer in found]
    wrapped = [wrap(layer) for layer in found]
    wrapped_before = [describe_branch(branch) for branch in wrapped]

    first = unwrap(merge(wrapped))
    second = unwrap(merge(wrapped))
    third = converge_layers(found)

    assert [describe_doc(layer.values) for layer in found] == docs_before
    assert [describe_branch(branch) for branch in wrapped] == wrapped_before
    assert typed(first.values) == typed(second.values) == typed(third.values) == typed(expected)
    assert first.provenance == second.provenance == third.provenance


def test_a_result_shares_no_list_with_the_documents() -> None:
    found = layers("a: [1, [2]]\nb: [{c: 1}]\n", "d: !append [3]\n")
    before = describe_doc(found[0].values)

    values = converge_layers(found).values
    values["a"].append(9)
    values["a"][1].append(9)
    values["b"][0]["c"] = 9
    values["d"].append(9)

    assert describe_doc(found[0].values) == before
    assert list(found[1].values["d"]) == [3]


# --- properties ---------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
SCALARS: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(alphabet="xyz", max_size=2)
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=3),
    lambda children: st.dictionaries(KEYS, children, max_size=3),
    max_leaves=8,
)
DOCS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(KEYS, VALUES, max_size=4)
DOC_STACKS = st.lists(DOCS, min_size=1, max_size=len(NAMES))


def as_yaml(doc: dict[str, Any]) -> str:
    """Block-style YAML: a key per line, so each key has a line of its own."""
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=False)


def reference_merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """SPEC 2.3 without tags: mappings merge key by key; lists and scalars replace."""

    def merge_two(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
        out = dict(lower)
        for key, value in upper.items():
            below = out.get(key)
            if isinstance(below, dict) and isinstance(value, dict):
                out[key] = merge_two(below, value)
            else:
                out[key] = value
        return out

    result: dict[str, Any] = {}
    for doc in docs:
        result = merge_two(result, doc)
    return result


def leaf_paths(values: dict[str, Any], path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths to every non-mapping value and every empty mapping."""
    found: set[tuple[str, ...]] = set()
    for key, value in values.items():
        here = (*path, key)
        if isinstance(value, dict) and value:
            found |= leaf_paths(value, here)
        else:
            found.add(here)
    return found


def line_of(doc: Mapping, path: tuple[str, ...]) -> int | None:
    """The line of the last key of ``path`` in ``doc``, or None when ``doc`` has no such path."""
    node: Any = doc
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, Mapping) or path[-1] not in node:
        return None
    return node.key_lines[path[-1]]


@given(DOC_STACKS)
def test_merging_plain_layers_is_a_recursive_dict_merge(docs: list[dict[str, Any]]) -> None:
    found = layers(*(as_yaml(doc) for doc in docs))
    assert [typed(layer.values, exact=False) for layer in found] == [typed(doc) for doc in docs]

    assert typed(converge_layers(found).values) == typed(reference_merge(docs))


@given(DOC_STACKS)
def test_every_leaf_comes_from_the_highest_layer_that_defines_its_path(
    docs: list[dict[str, Any]],
) -> None:
    found = layers(*(as_yaml(doc) for doc in docs))

    result = converge_layers(found)

    assert set(result.provenance) == leaf_paths(result.values)
    for path, where in result.provenance.items():
        defining = [
            (n, line)
            for n, layer in enumerate(found)
            if (line := line_of(layer.values, path)) is not None
        ]
        n, line = defining[-1]
        assert where == prov(n, line), path


# Tagged layers, written as flow YAML so that a tag can appear anywhere it means something: as a
# mapping value at any depth. (Inside list items, see test_delete_inside_a_list_item_...)
FLOW_SCALARS = st.sampled_from(
    ["1", "2", "-3", "null", "true", "false", '"x"', '"no"', "!secret S", "{secret: S}"]
)


def _flow_list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _flow_mapping(items: dict[str, str]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in items.items()) + "}"


def _append(text: str) -> str:
    return "!append " + text


def _prepend(text: str) -> str:
    return "!prepend " + text


def _replace(text: str) -> str:
    return "!replace " + text


def _list_item(text: str) -> bool:
    """Merge tags are refused as list items (the loader says so, with the line)."""
    return not text.startswith(("!append", "!prepend", "!replace", "!delete"))


def _flow_values(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    lists = st.lists(children.filter(_list_item), max_size=3).map(_flow_list)
    mappings = st.dictionaries(KEYS, children, max_size=3).map(_flow_mapping)
    return st.one_of(
        lists,
        mappings,
        lists.map(_append),
        lists.map(_prepend),
        mappings.map(_replace),
        st.just("!delete ~"),
        st.just("{secret: T, x: 1}"),
    )


FLOW_VALUES = st.recursive(FLOW_SCALARS, _flow_values, max_leaves=8)
TAGGED_DOCS = st.dictionaries(KEYS, FLOW_VALUES, max_size=4).map(_flow_mapping)
TAGGED_STACKS = st.lists(TAGGED_DOCS, min_size=1, max_size=len(NAMES))


@given(TAGGED_STACKS)
def test_merge_never_mutates_its_inputs(texts: list[str]) -> None:
    found = layers(*texts)
    docs_before = [describe_doc(layer.values) for layer in found]
    wrapped = [wrap(layer) for layer in found]
    wrapped_before = [describe_branch(branch) for branch in wrapped]

    first = unwrap(merge(wrapped))
    second = unwrap(merge(wrapped))

    assert [describe_doc(layer.values) for layer in found] == docs_before
    assert [describe_branch(branch) for branch in wrapped] == wrapped_before
    assert (typed(first.values), first.provenance) == (typed(second.values), second.provenance)


def _no_markers(value: Any) -> bool:
    """Only plain dicts and lists (no Mapping, Replace, Append, Prepend) and no !delete."""
    if isinstance(value, dict):
        return type(value) is dict and all(_no_markers(child) for child in value.values())
    if isinstance(value, list):
        return type(value) is list and all(_no_markers(child) for child in value)
    return value is not DELETE


@given(TAGGED_STACKS)
def test_tagged_layers_converge_to_plain_values(texts: list[str]) -> None:
    values = converge(*texts).values

    assert _no_markers(values), values


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, !delete ~]\n",
        "a:\n  - 1\n  - !delete\n",
        "a: [{b: !delete ~}]\n",
        "a: !append [!delete ~]\n",
    ],
)
def test_delete_inside_a_list_item_never_reaches_the_converged_values(text: str) -> None:
    # Found by the tagged property tests above: a !delete marker must never come out in the
    # converged values. The loader refuses it as a list item (with its line); inside a mapping
    # that is itself a list item it has nothing to delete and is dropped.
    try:
        values = converge("b: 1\n", text).values
    except YamlError:
        return
    assert _no_markers(values), values


def test_the_flow_documents_used_above_parse() -> None:
    text = _flow_mapping(
        {"a": "!append [1, !secret S]", "b": "!delete ~", "c": "!replace {d: !delete ~}"}
    )

    assert text == "{a: !append [1, !secret S], b: !delete ~, c: !replace {d: !delete ~}}"
    assert typed(converge("a: [0]\nb: 1\n", text).values) == typed(
        {"a": [0, 1, SecretRef("S")], "c": {}}
    )
