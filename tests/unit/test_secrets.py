"""Secrets (SPEC 2.3): where values come from, and that no value survives masking."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runner.errors import ExitCode, InvalidArgument
from runner.secrets import Masker, MissingSecret, SecretStore

# SecretStore


def secrets_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_text(text)
    return path


def test_environment_first_then_the_file(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "DB_PASSWORD: from-file\nAPI_TOKEN: 'tok en'\n")
    store = SecretStore({"RUNNER_SECRET_DB_PASSWORD": "from-env", "HOME": "/root"}, path)
    assert store.get("DB_PASSWORD") == "from-env"
    assert store.get("API_TOKEN") == "tok en"
    assert store.names() == ["API_TOKEN", "DB_PASSWORD"]
    assert store.known_values() == ["from-env", "from-file", "tok en"]


def test_without_a_file() -> None:
    store = SecretStore({"RUNNER_SECRET_A": "1", "RUNNER_SECRET_": "ignored", "A": "not a secret"})
    assert store.get("A") == "1"
    assert store.known_values() == ["1"]


def test_missing_secret_names_it_and_where_to_set_it() -> None:
    store = SecretStore({"RUNNER_SECRET_OTHER": "hunter2"})
    with pytest.raises(MissingSecret) as caught:
        store.get("DB_PASSWORD")
    assert str(caught.value) == (
        "secret 'DB_PASSWORD' is not set: set RUNNER_SECRET_DB_PASSWORD"
        " or add DB_PASSWORD to the secrets file"
    )
    assert caught.value.name == "DB_PASSWORD"
    assert caught.value.exit_code == ExitCode.INVALID


def test_an_empty_file_has_no_secrets(tmp_path: Path) -> None:
    assert SecretStore({}, secrets_file(tmp_path, "# nothing yet\n")).known_values() == []


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(InvalidArgument) as caught:
        SecretStore({}, path)
    assert str(caught.value) == f"{path}: cannot read the secrets file: No such file or directory"


def test_bad_yaml_names_file_and_line_but_not_the_value(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, 'A: fine\nB: "s3cr\\qet"\n')
    with pytest.raises(InvalidArgument) as caught:
        SecretStore({}, path)
    assert str(caught.value) == (
        f"{path}:2: secrets file is not valid YAML: found unknown escape character"
    )


def test_bad_yaml_structure(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "A: x\n  B: s3cret: y\n")
    with pytest.raises(InvalidArgument) as caught:
        SecretStore({}, path)
    assert str(caught.value).startswith(f"{path}:2: secrets file is not valid YAML: ")
    assert "s3cret" not in str(caught.value)


def test_the_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "# secrets\n- s3cret\n")
    with pytest.raises(InvalidArgument) as caught:
        SecretStore({}, path)
    assert str(caught.value) == f"{path}:2: the secrets file must be a mapping of NAME: value"


def test_every_value_problem_is_listed_by_line_without_values(tmp_path: Path) -> None:
    path = secrets_file(
        tmp_path,
        "PIN: 0123\nOK: 'fine'\nFLAG: yes\nLIST: [s3cret]\nOK: again\n7: seven\nNONE:\n",
    )
    with pytest.raises(InvalidArgument) as caught:
        SecretStore({}, path)
    hint = " (quote it, so YAML does not turn it into a number, boolean or null)"
    assert str(caught.value).splitlines() == [
        f"{path}:1: secret 'PIN' must be a string{hint}",
        f"{path}:3: secret 'FLAG' must be a string{hint}",
        f"{path}:4: secret 'LIST' must be a string{hint}",
        f"{path}:5: secret 'OK' is defined twice",
        f"{path}:6: a secret name must be a non-empty string",
        f"{path}:7: secret 'NONE' must be a string{hint}",
    ]
    assert not {"0123", "83", "s3cret", "again", "seven"} & set(str(caught.value).split())


def test_quoted_and_block_values(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "PIN: '0123'\nKEY: |\n  line 1\n  line 2\nESC: \"a\\tb\"\n")
    store = SecretStore({}, path)
    assert store.get("PIN") == "0123"
    assert store.get("KEY") == "line 1\nline 2\n"
    assert store.get("ESC") == "a\tb"


# Masker


def test_mask_replaces_every_occurrence() -> None:
    masker = Masker(["hunter2", ""])
    assert masker.mask("pw=hunter2; again hunter2.") == "pw=***; again ***."
    assert masker.mask("nothing here") == "nothing here"


def test_no_secrets_masks_nothing() -> None:
    masker = Masker(["", ""])
    assert masker.mask("text") == "text"
    stream = masker.stream()
    assert stream.feed(b"te") + stream.feed(b"xt") + stream.close() == "text"


def test_longest_first_and_overlaps() -> None:
    masker = Masker(["abc", "abcdef", "efg"])
    assert masker.mask("xabcdefgx") == "x***gx"  # abcdef, not abc; efg overlaps and loses
    assert masker.mask("xabcxefgx") == "x***x***x"


def test_shell_quoted_and_json_escaped_forms() -> None:
    secret = 'it\'s a "pass"\\wörd'
    masker = Masker([secret])
    assert masker.mask(f"echo {shlex.quote(secret)}") == "echo ***"
    assert masker.mask(json.dumps({"pw": secret})) == '{"pw": "***"}'
    assert masker.mask(json.dumps({"pw": secret}, ensure_ascii=False)) == '{"pw": "***"}'
    assert masker.mask(secret) == "***"


def test_stream_masks_a_secret_split_across_chunks() -> None:
    stream = Masker(["hunter2"]).stream()
    assert stream.feed(b"password: hun") == "password: "
    assert stream.feed(b"ter") == ""
    assert stream.feed(b"2 and more\n") == "*** and more\n"
    assert stream.close() == ""


def test_stream_holds_back_only_what_could_start_a_secret() -> None:
    stream = Masker(["secret"]).stream()
    assert stream.feed(b"a sec") == "a "
    assert stream.feed(b"ond line\n") == "second line\n"
    assert stream.feed(b"ends with se") == "ends with "
    assert stream.close() == "se"


def test_stream_decodes_utf8_split_across_chunks() -> None:
    stream = Masker(["pässword"]).stream()
    data = "é then pässword".encode()
    out = "".join(stream.feed(data[i : i + 1]) for i in range(len(data))) + stream.close()
    assert out == "é then ***"


def test_stream_replaces_invalid_utf8() -> None:
    stream = Masker(["x"]).stream()
    assert stream.feed(b"a\xff") + stream.feed(b"\xe2\x82") + stream.close() == "a\ufffd\ufffd"


# Properties: streaming equals masking the whole text, and no secret survives


ALPHABET = "ab*'\"\\ é\n"
secret_lists = st.lists(st.text(ALPHABET, min_size=1, max_size=6), min_size=1, max_size=4)


@st.composite
def texts_with_secrets(draw: st.DrawFn) -> tuple[list[str], str]:
    secrets = draw(secret_lists)
    parts = draw(
        st.lists(st.one_of(st.text(ALPHABET, max_size=8), st.sampled_from(secrets)), max_size=12)
    )
    return secrets, "".join(parts)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(texts_with_secrets(), st.lists(st.integers(min_value=0), max_size=12))
@example((["ab", "abab"], "xabab"), [3])
@example((["ab", "b*"], "ab*"), [1])
def test_stream_equals_mask_of_the_whole_text(case: tuple[list[str], str], cuts: list[int]) -> None:
    secrets, text = case
    masker = Masker(secrets)
    stream = masker.stream()
    streamed = "".join(stream.feed(chunk) for chunk in split(text.encode(), cuts)) + stream.close()
    assert streamed == masker.mask(text)
    for secret in secrets:
        if "*" not in secret:  # a secret made with the mask's own character may be rebuilt
            assert secret not in streamed


@settings(max_examples=200, deadline=None)
@given(secret_lists, st.binary(max_size=40), st.lists(st.integers(min_value=0), max_size=8))
def test_stream_equals_mask_for_any_bytes(secrets: list[str], data: bytes, cuts: list[int]) -> None:
    masker = Masker(secrets)
    stream = masker.stream()
    streamed = "".join(stream.feed(chunk) for chunk in split(data, cuts)) + stream.close()
    assert streamed == masker.mask(data.decode("utf-8", errors="replace"))
