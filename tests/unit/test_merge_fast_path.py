"""The values-only merge (the hot path) must agree with the provenance merge on every input."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.loading.yamlfile import DELETE, Append, Mapping, Prepend, Replace, SecretRef
from runner.model import Layer
from runner.properties.merge import merge, merge_values, unwrap, wrap

KEYS = st.sampled_from(["a", "b", "c", "d"])
SCALARS = st.one_of(
    st.integers(-3, 3),
    st.text("xy", max_size=2),
    st.none(),
    st.booleans(),
    st.builds(SecretRef, st.sampled_from(["S1", "S2"])),
)


def _mapping(cls: type[Mapping], items: dict[str, Any]) -> Mapping:
    out = cls(1)
    for i, (key, value) in enumerate(items.items()):
        out[key] = value
        out.key_lines[key] = i + 2
    return out


values = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=3),
    lambda children: st.one_of(
        st.dictionaries(KEYS, children, max_size=3).map(lambda d: _mapping(Mapping, d)),
        st.dictionaries(KEYS, children, max_size=2).map(lambda d: _mapping(Replace, d)),
        st.lists(SCALARS, max_size=2).map(Append),
        st.lists(SCALARS, max_size=2).map(Prepend),
        st.just(DELETE),
        st.builds(lambda name: {"secret": name}, st.sampled_from(["S3"])),
    ),
    max_leaves=12,
)
layers = st.lists(
    st.dictionaries(KEYS, values, max_size=4).map(lambda d: _mapping(Mapping, d)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(layers)
def test_values_only_merge_equals_the_provenance_merge(docs: list[Mapping]) -> None:
    wrapped = [wrap(Layer(f"layer{i}", f"f{i}.yaml", doc)) for i, doc in enumerate(docs)]
    expected = unwrap(merge(wrapped)).values
    fast: dict[str, Any] = {}
    for doc in docs:
        fast = merge_values(fast, doc)
    assert fast == expected
    assert [type(v) for v in fast.values()] == [type(v) for v in expected.values()]
