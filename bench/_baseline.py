"""The floor our loader is compared against: read and parse every YAML blob at a revision.

No validation, no merging, no provenance: walk the tree with pygit2, read each ``.yaml`` blob and
parse it with libyaml (``CSafeLoader``). The ops repo's own tags (``!append``, ``!prepend``,
``!replace``, ``!delete``, ``!secret``) and any other local tag are constructed as the plain
value underneath them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2
import yaml

OPS_TAGS = ("!append", "!prepend", "!replace", "!delete", "!secret")


class PlainTagLoader(yaml.CSafeLoader):
    """``CSafeLoader`` that builds the plain value for ops-repo tags and unknown local tags."""


def _construct_plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(
        None, None, f"unexpected node {type(node).__name__}", node.start_mark
    )


def _construct_unknown(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    return _construct_plain(loader, node)


for _tag in OPS_TAGS:
    PlainTagLoader.add_constructor(_tag, _construct_plain)
PlainTagLoader.add_multi_constructor("!", _construct_unknown)


def _yaml_blobs(repo: pygit2.Repository, tree: pygit2.Tree) -> Iterator[pygit2.Blob]:
    stack = [tree]
    while stack:
        current = stack.pop()
        for entry in current:
            if entry.type_str == "tree":
                stack.append(repo[entry.id].peel(pygit2.Tree))
            elif (
                entry.type_str == "blob" and entry.name is not None and entry.name.endswith(".yaml")
            ):
                yield repo[entry.id].peel(pygit2.Blob)


def parse_only(repo_path: str | Path, rev: str = "HEAD") -> tuple[int, float]:
    """Parse every ``.yaml`` file of the tree at ``rev``; return ``(files, seconds)``.

    The time covers opening the repository, resolving the revision, walking the tree, reading
    the blobs and parsing them.
    """
    started = time.perf_counter()
    repo = pygit2.Repository(str(repo_path))
    tree = repo.revparse_single(rev).peel(pygit2.Tree)
    count = 0
    for blob in _yaml_blobs(repo, tree):
        yaml.load(blob.data, Loader=PlainTagLoader)  # noqa: S506 - a safe loader subclass
        count += 1
    return count, time.perf_counter() - started
