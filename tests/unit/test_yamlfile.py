"""The YAML loader: positions, tags, duplicate keys, alias bombs and YAML 1.2 scalars.

Every document here is written out in full so that a reader can count its lines.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from runner.loading.yamlfile import (
    DELETE,
    MAX_EXPANDED_NODES,
    Append,
    DeleteType,
    Mapping,
    Prepend,
    Replace,
    SecretRef,
    YamlError,
    parse,
)


def mapping(text: str) -> Mapping:
    """``text`` parsed; it must be a mapping."""
    value = parse(text)
    assert isinstance(value, Mapping)
    return value


def error(text: str) -> tuple[int, str]:
    """The line and message of the error ``text`` raises."""
    with pytest.raises(YamlError) as caught:
        parse(text)
    return caught.value.line, caught.value.message


def describe(value: Any) -> Any:
    """A plain picture of a parsed value: types, lines, key lines and contents. Two values with
    equal pictures are indistinguishable to the rest of the runner."""
    if isinstance(value, Mapping):
        return (
            type(value).__name__,
            value.line,
            dict(value.key_lines),
            {key: describe(child) for key, child in value.items()},
        )
    if isinstance(value, list):
        return (type(value).__name__, [describe(child) for child in value])
    return (type(value).__name__, value)


# --- lines ------------------------------------------------------------------------------------


def test_every_key_knows_its_line() -> None:
    doc = mapping("name: api\nport: 8080\n\nreplicas: 3\n")

    assert doc == {"name": "api", "port": 8080, "replicas": 3}
    assert doc.line == 1
    assert doc.key_lines == {"name": 1, "port": 2, "replicas": 4}


def test_a_nested_mapping_starts_at_its_first_key() -> None:
    doc = mapping(
        "service:\n"  # 1
        "  name: api\n"  # 2
        "  limits:\n"  # 3
        "    # a comment\n"  # 4
        "    cpu: 2\n"  # 5
        "    memory: 4Gi\n"  # 6
    )

    service = doc["service"]
    limits = service["limits"]
    assert (doc.key_lines, service.line, service.key_lines) == (
        {"service": 1},
        2,
        {"name": 2, "limits": 3},
    )
    assert (limits.line, limits.key_lines) == (5, {"cpu": 5, "memory": 6})


def test_lines_count_from_the_top_of_the_file_past_comments_and_document_marker() -> None:
    doc = mapping("# header\n\n---\na: 1\nb:\n  c: 2\n")

    assert (doc.line, doc.key_lines, doc["b"].line, doc["b"].key_lines) == (
        4,
        {"a": 4, "b": 5},
        6,
        {"c": 6},
    )


def test_mappings_that_are_list_items_know_their_lines() -> None:
    doc = mapping(
        "steps:\n"  # 1
        "  - name: build\n"  # 2
        "    run: make\n"  # 3
        "  - {name: test, run: make test}\n"  # 4
        "  -\n"  # 5
        "    name: ship\n"  # 6
    )

    steps = doc["steps"]
    assert type(steps) is list
    assert [(step.line, step.key_lines) for step in steps] == [
        (2, {"name": 2, "run": 3}),
        (4, {"name": 4, "run": 4}),
        (6, {"name": 6}),
    ]


def test_line_of_an_unknown_key_is_the_line_of_its_mapping() -> None:
    doc = mapping("a: 1\nb:\n  c: 2\n")

    assert doc["b"].line_of("c") == 3
    assert doc["b"].line_of("missing") == 3


# --- merge keys --------------------------------------------------------------------------------


def test_an_explicit_key_overrides_a_merged_one_and_keeps_its_own_line() -> None:
    doc = mapping(
        "defaults: &defaults\n"  # 1
        "  retries: 3\n"  # 2
        "  timeout: 10\n"  # 3
        "api:\n"  # 4
        "  <<: *defaults\n"  # 5
        "  timeout: 30\n"  # 6
    )

    assert doc["api"] == {"retries": 3, "timeout": 30}
    assert doc["api"].key_lines == {"retries": 2, "timeout": 6}
    assert doc["defaults"] == {"retries": 3, "timeout": 10}


def test_an_explicit_key_wins_even_when_written_before_the_merge_key() -> None:
    doc = mapping("api:\n  timeout: 30\n  <<: {retries: 3, timeout: 10}\n")

    assert doc["api"] == {"timeout": 30, "retries": 3}
    assert doc["api"].key_lines == {"timeout": 2, "retries": 3}


def test_the_first_of_several_merged_mappings_wins() -> None:
    doc = mapping("api:\n  <<: [{a: 1}, {a: 2, b: 2}]\n")

    assert doc["api"] == {"a": 1, "b": 2}


def test_a_duplicate_explicit_key_beside_a_merge_key_is_an_error() -> None:
    text = "api:\n  <<: {timeout: 10}\n  timeout: 30\n  timeout: 40\n"

    assert error(text) == (4, "duplicate key 'timeout' (first defined at line 3)")


def test_merging_a_scalar_is_an_error_on_its_line() -> None:
    line, message = error("a: 1\napi:\n  <<: 3\n")

    assert line == 3
    assert "merg" in message


# --- keys ---------------------------------------------------------------------------------------


def test_a_duplicate_key_is_an_error_naming_both_lines() -> None:
    assert error("a: 1\nb: 2\na: 3\n") == (3, "duplicate key 'a' (first defined at line 1)")


def test_a_duplicate_key_in_a_nested_mapping_is_an_error() -> None:
    assert error("a:\n  x: 1\n  x: 2\n") == (3, "duplicate key 'x' (first defined at line 2)")


def test_keys_are_strings_and_yaml_booleans_keep_their_yaml_spelling() -> None:
    doc = mapping("1: one\ntrue: yes\n2.5: x\n")

    assert doc == {"1": "one", "true": "yes", "2.5": "x"}
    assert all(type(key) is str for key in doc)


def test_keys_that_become_the_same_string_are_duplicates() -> None:
    assert error("1: a\n'1': b\n") == (2, "duplicate key '1' (first defined at line 1)")


def test_keys_that_are_equal_in_python_but_not_as_strings_are_not_duplicates() -> None:
    # True == 1 == 1.0 in Python, yet the keys are "true", "1" and "1.0".
    assert mapping("true: a\n1: b\n1.0: c\n") == {"true": "a", "1": "b", "1.0": "c"}


@pytest.mark.parametrize(
    ("text", "line"),
    [("[a]: 1\n", 1), ("{a: 1}: 2\n", 1), ("x: 1\n? [a]\n: 2\n", 2)],
)
def test_a_key_must_be_a_scalar(text: str, line: int) -> None:
    assert error(text) == (line, "a mapping key must be a scalar")


# --- tags ---------------------------------------------------------------------------------------


def test_every_tag_loads_as_its_own_type() -> None:
    doc = mapping(
        "after: !append [3, 4]\n"
        "before: !prepend [1]\n"
        "limits: !replace {cpu: 1}\n"
        "gone: !delete\n"
        "token: !secret API_TOKEN\n"
    )

    assert doc == {
        "after": [3, 4],
        "before": [1],
        "limits": {"cpu": 1},
        "gone": DELETE,
        "token": "API_TOKEN",
    }
    assert {key: type(value) for key, value in doc.items()} == {
        "after": Append,
        "before": Prepend,
        "limits": Replace,
        "gone": DeleteType,
        "token": SecretRef,
    }
    assert doc.key_lines == {"after": 1, "before": 2, "limits": 3, "gone": 4, "token": 5}


def test_block_tagged_collections_keep_their_lines() -> None:
    doc = mapping(
        "tags: !append\n"  # 1
        "  - blue\n"  # 2
        "limits: !replace\n"  # 3
        "  cpu: 1\n"  # 4
        "  memory: 2Gi\n"  # 5
    )

    assert doc == {"tags": ["blue"], "limits": {"cpu": 1, "memory": "2Gi"}}
    assert (type(doc["limits"]), doc["limits"].key_lines) == (Replace, {"cpu": 4, "memory": 5})


def test_tags_inside_lists_and_nested_mappings() -> None:
    doc = mapping("a:\n  b: !append [{c: !secret S}]\n  d: !delete ~\n")

    assert doc == {"a": {"b": [{"c": "S"}], "d": DELETE}}
    assert type(doc["a"]["b"]) is Append
    assert type(doc["a"]["b"][0]["c"]) is SecretRef


@pytest.mark.parametrize(
    "text",
    [
        "gone: !delete\n",
        "gone: !delete ~\n",
        "gone: !delete null\n",
        "gone: !delete  # with a comment\n",
        "{gone: !delete ~}\n",
        "{gone: !delete , kept: 1}\n",
    ],
)
def test_delete_takes_no_value_or_a_null(text: str) -> None:
    assert mapping(text)["gone"] is DELETE


def test_delete_is_one_marker_with_a_yaml_like_repr() -> None:
    assert DeleteType() is DELETE
    assert repr(DELETE) == "!delete"


def test_secret_is_a_reference_by_name_never_a_value() -> None:
    token = mapping("token: !secret API_TOKEN\n")["token"]

    assert isinstance(token, SecretRef)
    assert token.name == "API_TOKEN"
    assert repr(token) == "SecretRef('API_TOKEN')"


def test_the_secret_mapping_form_stays_a_plain_mapping_at_the_loader_level() -> None:
    doc = mapping("token: {secret: API_TOKEN}\n")

    assert doc == {"token": {"secret": "API_TOKEN"}}
    assert type(doc["token"]) is Mapping
    assert type(doc["token"]["secret"]) is str


BAD_SECRET = "!secret needs a secret name matching [A-Za-z_][A-Za-z0-9_]*"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: 1\nb: !append {x: 1}\n", 2, "!append needs a list, found a mapping"),
        ("a: 1\nb: !append x\n", 2, "!append needs a list, found a scalar"),
        ("a: 1\nb: !append\n  x: 1\n", 2, "!append needs a list, found a mapping"),
        ("a: 1\nb: !prepend {x: 1}\n", 2, "!prepend needs a list, found a mapping"),
        ("a: 1\n\nb: !prepend 3\n", 3, "!prepend needs a list, found a scalar"),
        ("a: 1\nb: !replace [1]\n", 2, "!replace needs a mapping, found a list"),
        ("a: 1\nb: !replace 1\n", 2, "!replace needs a mapping, found a scalar"),
        ("a: 1\nb: !replace\n  - 1\n", 2, "!replace needs a mapping, found a list"),
        ("a: 1\nb: !delete 1\n", 2, "!delete takes no value"),
        ("a: 1\nb: !delete [x]\n", 2, "!delete takes no value"),
        ("a: 1\nb: !delete {x: 1}\n", 2, "!delete takes no value"),
        *(
            (f"a: 1\nb: !secret {name}\n", 2, BAD_SECRET)
            for name in ("", "1ABC", "'has space'", "A-B", "[X]", "{X: 1}")
        ),
        ("a: 1\nb: !foo 1\n", 2, "unknown tag !foo"),
        ("a: 1\nb:\n  c: !foo {x: 1}\n", 3, "unknown tag !foo"),
        ("a: 1\nb: !!set {x, y}\n", 2, "unknown tag tag:yaml.org,2002:set"),
        ("a: 1\nb: !!binary aGVsbG8=\n", 2, "unknown tag tag:yaml.org,2002:binary"),
        ("a: 1\nb: !!omap [c: 1]\n", 2, "unknown tag tag:yaml.org,2002:omap"),
        ("a: !!pairs [c: 1]\n", 1, "unknown tag tag:yaml.org,2002:pairs"),
        (
            "a: 1\nb: !!python/object/apply:os.system [ls]\n",
            2,
            "unknown tag tag:yaml.org,2002:python/object/apply:os.system",
        ),
    ],
)
def test_a_tag_on_the_wrong_kind_of_node_is_an_error_on_its_line(
    text: str, line: int, message: str
) -> None:
    assert error(text) == (line, message)


# --- scalars ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("no", "no"),
        ("yes", "yes"),
        ("No", "No"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:30:00Z", "2024-01-01T10:30:00Z"),
        ("!!timestamp 2024-01-01", "2024-01-01"),
        ("~", None),
        ("null", None),
        ("", None),
        ("42", 42),
        ("-1.5", -1.5),
        ("'42'", "42"),
        ("!!str true", "true"),
    ],
)
def test_scalars_follow_yaml_1_2_booleans_and_keep_dates_as_strings(
    scalar: str, value: object
) -> None:
    loaded = mapping(f"v: {scalar}\n")["v"]

    assert (type(loaded), loaded) == (type(value), value)


def test_the_norway_problem_does_not_happen() -> None:
    assert mapping("country: no\nenabled: yes\nready: true\n") == {
        "country": "no",
        "enabled": "yes",
        "ready": True,
    }


# --- alias bombs --------------------------------------------------------------------------------


def _lists_of_aliases(last_fanout: int) -> str:
    """Ten scalars, then lists of ten aliases of the previous list, then ``last_fanout``
    aliases of that. Expanded, counting each key and each value:
    1 + (1 + 11) + (1 + 111) + (1 + 1111) + (1 + 1 + 1111 * last_fanout) nodes, so 88 gives
    99,007 nodes and 89 gives 100,118."""
    return (
        "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
        f"b: &b [{', '.join(['*a'] * 10)}]\n"
        f"c: &c [{', '.join(['*b'] * 10)}]\n"
        f"d: [{', '.join(['*c'] * last_fanout)}]\n"
    )


def test_a_billion_laughs_is_refused() -> None:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]

    line, message = error("\n".join(lines) + "\n")

    assert line == 1
    assert message == (f"aliases expand to more than {MAX_EXPANDED_NODES} nodes (an alias bomb?)")


def test_just_over_the_limit_is_refused() -> None:
    assert MAX_EXPANDED_NODES == 100_000
    assert "alias bomb" in error(_lists_of_aliases(89))[1]


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n"])
def test_an_alias_inside_its_own_anchor_is_refused(text: str) -> None:
    assert "alias bomb" in error(text)[1]


def test_moderate_aliases_are_accepted_and_shared() -> None:
    doc = mapping(_lists_of_aliases(88))  # just under the limit

    assert len(doc["d"]) == 88
    assert doc["c"] == [[list(range(1, 11))] * 10] * 10
    assert doc["d"][0] is doc["d"][87] is doc["c"]


def test_reused_defaults_through_merge_keys_are_accepted() -> None:
    services = "".join(f"svc{n}:\n  <<: *defaults\n  name: s{n}\n" for n in range(200))
    doc = mapping("defaults: &defaults\n  retries: 3\n  timeout: 10\n" + services)

    assert len(doc) == 201
    assert doc["svc199"] == {"retries": 3, "timeout": 10, "name": "s199"}


def test_a_star_inside_a_string_is_not_an_alias() -> None:
    assert mapping("glob: '*.yaml'\ncron: '*/5 * * * *'\n") == {
        "glob": "*.yaml",
        "cron": "*/5 * * * *",
    }


# --- pickling (the parse cache pickles documents) ------------------------------------------------


TAGGED = (
    "name: api\n"  # 1
    "after: !append [1, {x: 2}]\n"  # 2
    "before: !prepend [0]\n"  # 3
    "limits: !replace\n"  # 4
    "  cpu: 1\n"  # 5
    "gone: !delete\n"  # 6
    "token: !secret API_TOKEN\n"  # 7
    "nested:\n"  # 8
    "  items:\n"  # 9
    "    - {k: v}\n"  # 10
    "  secret_form: {secret: DB}\n"  # 11
)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_keeps_lines_and_tag_types(protocol: int) -> None:
    doc = parse(TAGGED)

    copy = pickle.loads(pickle.dumps(doc, protocol=protocol))  # noqa: S301 - our own bytes

    assert describe(copy) == describe(doc)
    assert copy["gone"] is DELETE
    assert copy["token"].name == "API_TOKEN"
    assert copy["nested"]["items"][0].key_lines == {"k": 10}


def test_the_pictures_compared_after_pickling_do_see_lines_and_types() -> None:
    assert describe(parse("a: !append [1]\n")) != describe(parse("a: [1]\n"))
    assert describe(parse("a: 1\n")) != describe(parse("\na: 1\n"))


# --- documents ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "--- ~\n"])
def test_an_empty_document_is_none(text: str) -> None:
    assert parse(text) is None


def test_a_document_need_not_be_a_mapping() -> None:
    assert parse("- a\n- b\n") == ["a", "b"]
    assert parse("just text\n") == "just text"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3),
        ("a: 1\n  b: 2\n", 2),
        ("a: 1\nb:\n\tc: 1\n", 3),
        ("a: 1\nb: 'never closed\n", 2),
        ("a: 1\nb: [1, 2\n\n", 2),
        ("a: 1\nb: {c: 1\n", 2),
        ("a: 1\n- b\n", 2),
        ("a: *nowhere\n", 1),
        ("a: 1\n---\nb: 2\n", 2),
    ],
)
def test_a_syntax_error_names_its_line_or_where_an_unclosed_node_opens(
    text: str, line: int
) -> None:
    found_line, message = error(text)

    assert found_line == line
    assert message.startswith("YAML ")
