"""Pseudonymization keys and pseudonyms: confidentiality properties, file handling, errors."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import re
import stat

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackii_eval.errors import IngestError, KeyMissingError, TrackIIEvalWarning
from trackii_eval.ingest.pseudonym import (
    KEY_BYTES,
    PseudonymKey,
    generate_key,
    load_key,
    normalise_id,
    write_key,
)

KEY_A = PseudonymKey(bytes(range(32)))
KEY_B = PseudonymKey(bytes(range(1, 33)))
PSEUDONYM = re.compile(r"^P-[0-9a-f]{16}$")


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKII_EVAL_KEY", raising=False)
    monkeypatch.delenv("TRACKII_EVAL_KEY_FILE", raising=False)


@pytest.fixture
def keydir(tmp_path_factory: pytest.TempPathFactory) -> os.PathLike[str]:
    # Outside any git work tree (pytest's base temp dir is not in the repository).
    return tmp_path_factory.mktemp("keys")


def _mode(path: os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ----------------------------------------------------------------------------- keys


def test_generate_key_is_32_random_bytes() -> None:
    a, b = generate_key(), generate_key()
    assert isinstance(a, bytes) and len(a) == KEY_BYTES == 32
    assert a != b


def test_write_key_owner_only_and_round_trips(keydir, no_key_env) -> None:
    path = keydir / "new" / "deeper" / "study.key"
    fingerprint = write_key(path)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    text = path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", text)  # documented format: hex + newline
    key = load_key(path)
    assert key.fingerprint == fingerprint
    assert key == PseudonymKey(bytes.fromhex(text.strip()))


def test_write_key_refuses_to_overwrite(keydir) -> None:
    path = keydir / "study.key"
    first = write_key(path)
    before = path.read_text()
    with pytest.raises(IngestError, match="refusing to overwrite"):
        write_key(path)
    assert path.read_text() == before
    second = write_key(path, overwrite=True)
    assert second != first and _mode(path) == 0o600


@pytest.mark.parametrize("marker", ["dir", "file"])
def test_write_key_refuses_git_work_tree(keydir, marker: str) -> None:
    repo = keydir / "repo"
    (repo / "sub").mkdir(parents=True)
    if marker == "dir":
        (repo / ".git").mkdir()
    else:  # linked worktrees and submodules have a .git file
        (repo / ".git").write_text("gitdir: /elsewhere\n")
    target = repo / "sub" / "study.key"
    with pytest.raises(IngestError, match="git work tree"):
        write_key(target)
    assert not target.exists()
    write_key(target, allow_in_repo=True)
    assert _mode(target) == 0o600


def test_write_key_restores_a_given_key(keydir) -> None:
    path = keydir / "restored.key"
    assert write_key(path, key=KEY_A.secret) == KEY_A.fingerprint
    assert load_key(path) == KEY_A


def test_load_key_sources_and_precedence(keydir, monkeypatch) -> None:
    path_a, path_b = keydir / "a.key", keydir / "b.key"
    write_key(path_a, key=KEY_A.secret)
    write_key(path_b, key=KEY_B.secret)
    monkeypatch.setenv("TRACKII_EVAL_KEY_FILE", str(path_b))
    monkeypatch.delenv("TRACKII_EVAL_KEY", raising=False)
    assert load_key() == KEY_B  # the file named by the environment
    assert load_key(path_a) == KEY_A  # an explicit path wins
    monkeypatch.delenv("TRACKII_EVAL_KEY_FILE")
    monkeypatch.setenv("TRACKII_EVAL_KEY", KEY_A.secret.hex().upper() + "\n")
    assert load_key() == KEY_A  # hex in the environment, case and whitespace tolerated


def test_load_key_refuses_disagreeing_environment(keydir, monkeypatch) -> None:
    path_b = keydir / "b.key"
    write_key(path_b, key=KEY_B.secret)
    monkeypatch.setenv("TRACKII_EVAL_KEY_FILE", str(path_b))
    monkeypatch.setenv("TRACKII_EVAL_KEY", KEY_A.secret.hex())
    with pytest.raises(IngestError, match="different keys") as err:
        load_key()
    assert KEY_A.secret.hex() not in str(err.value)


def test_key_missing_message_explains_what_to_do(no_key_env) -> None:
    with pytest.raises(KeyMissingError) as err:
        load_key()
    message = str(err.value)
    assert "trackii-eval keygen --out ~/.config/trackii_eval/<study>.key" in message
    assert "--key-file" in message and "TRACKII_EVAL_KEY_FILE" in message
    assert "can no longer be linked to the old pseudonyms" in message
    assert isinstance(err.value, IngestError)


def test_missing_key_file_is_key_missing(keydir, no_key_env) -> None:
    with pytest.raises(KeyMissingError, match="keygen"):
        load_key(keydir / "nowhere.key")


def test_group_readable_key_warns_or_is_refused(keydir) -> None:
    path = keydir / "loose.key"
    write_key(path, key=KEY_A.secret)
    os.chmod(path, 0o644)
    with pytest.warns(TrackIIEvalWarning, match="chmod 600"):
        assert load_key(path) == KEY_A
    with pytest.raises(IngestError, match="readable or writable by group/others"):
        load_key(path, strict_permissions=True)


def test_malformed_key_file_does_not_echo_content(keydir) -> None:
    path = keydir / "bad.key"
    secret = "zz" + KEY_A.secret.hex()[2:]
    path.write_text(secret)
    os.chmod(path, 0o600)
    with pytest.raises(IngestError) as err:
        load_key(path)
    assert secret not in str(err.value) and secret[:16] not in str(err.value)


def test_wrong_length_key_rejected() -> None:
    with pytest.raises(IngestError, match="32 bytes"):
        PseudonymKey(b"short")


def test_repr_and_str_never_show_the_key() -> None:
    key = PseudonymKey(generate_key())
    shown = [repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})]
    raw_text = key.secret.decode("latin-1")
    for text in shown:
        assert key.secret.hex() not in text.lower()
        assert key.secret.hex()[:8] not in text.lower()
        assert raw_text not in text and repr(key.secret) not in text
        assert key.fingerprint in text


def test_key_cannot_be_pickled_or_leak_through_copies() -> None:
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(KEY_A)
    assert copy.copy(KEY_A) is KEY_A and copy.deepcopy(KEY_A) is KEY_A


def test_fingerprint_is_domain_separated() -> None:
    fp = KEY_A.fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    plain = hashlib.sha256(KEY_A.secret).hexdigest()
    assert fp not in plain  # not a prefix (or any part) of SHA-256(key)
    assert fp not in KEY_A.secret.hex()
    assert fp != KEY_B.fingerprint
    assert "P-" + fp != KEY_A.pseudonymize("x")


# ----------------------------------------------------------------------------- pseudonyms


def test_pseudonym_format_and_determinism() -> None:
    p = KEY_A.pseudonymize("ISR-0042")
    assert PSEUDONYM.match(p)
    assert p == KEY_A.pseudonymize("ISR-0042")
    same_bytes = PseudonymKey(bytes(KEY_A.secret))
    assert same_bytes.pseudonymize("ISR-0042") == p  # a reloaded key gives the same pseudonym


def test_different_keys_give_different_pseudonyms() -> None:
    ids = [f"id-{i}" for i in range(200)]
    a, b = KEY_A.pseudonymize_many(ids), KEY_B.pseudonymize_many(ids)
    assert not set(a) & set(b)


def test_namespaces_are_separated() -> None:
    ids = [f"id-{i}" for i in range(200)]
    participant = set(KEY_A.pseudonymize_many(ids))
    other = set(KEY_A.pseudonymize_many(ids, namespace="linkage-person"))
    assert not participant & other
    with pytest.raises(ValueError, match="NUL"):
        KEY_A.pseudonymize("x", namespace="a\x00b")
    with pytest.raises(ValueError):
        KEY_A.pseudonymize("x", namespace="")


@pytest.mark.parametrize(
    "variant",
    [" ab 12 ", "AB-12", "ab\u201312", "Ab \u2013 12", "\uff21\uff22\uff0d\uff11\uff12",
     "ab\u200b-12", "\u200fAB - 12", "ab\u00a012", "ab\t\t12", "AB\u221212"],
)
def test_normalisation_unifies_trivial_variants(variant: str) -> None:
    assert normalise_id(variant) == "ab-12"
    assert KEY_A.pseudonymize(variant) == KEY_A.pseudonymize("ab-12")


def test_normalisation_keeps_real_differences() -> None:
    assert KEY_A.pseudonymize("ab12") != KEY_A.pseudonymize("ab-12")
    assert KEY_A.pseudonymize("ab-13") != KEY_A.pseudonymize("ab-12")
    assert normalise_id("Straße") == normalise_id("STRASSE")  # casefold, not lower


def test_pseudonymize_many_matches_scalar_and_keeps_index() -> None:
    ids = pd.Series(["A-1", "a 1", "B-2", "A-1"], index=[10, 11, 12, 13], name="raw")
    out = KEY_A.pseudonymize_many(ids)
    assert list(out.index) == [10, 11, 12, 13] and out.name == "raw"
    assert list(out) == [KEY_A.pseudonymize(x) for x in ids]
    assert out[10] == out[11] == out[13] != out[12]
    assert list(KEY_A.pseudonymize_many(iter(["A-1"]))) == [out[10]]


def test_missing_or_empty_ids_are_refused_without_values() -> None:
    ids = pd.Series(["secret-code-1", None, float("nan"), "  ", "--"], index=list("abcde"))
    with pytest.raises(IngestError) as err:
        KEY_A.pseudonymize_many(ids)
    assert "b, c, d" in str(err.value) and "secret-code-1" not in str(err.value)
    with pytest.raises(IngestError, match="empty"):
        KEY_A.pseudonymize_many(["ok", "--"])
    with pytest.raises(IngestError, match="empty"):
        KEY_A.pseudonymize(" - ")


def _hash_substrings(text: str) -> set[str]:
    out = set()
    for digest in (hashlib.sha256(text.encode()).hexdigest(),
                   hashlib.md5(text.encode()).hexdigest()):
        out |= {digest[i : i + 8] for i in range(len(digest) - 7)}
    return out


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda t: normalise_id(t) != ""))
def test_pseudonym_is_not_a_plain_hash_of_the_id(raw: str) -> None:
    pseudonym = KEY_A.pseudonymize(raw)
    body = pseudonym[2:]
    for text in {raw, normalise_id(raw), raw.strip(), raw.upper(), raw.lower()}:
        sha, md5 = (hashlib.sha256(text.encode()).hexdigest(),
                    hashlib.md5(text.encode()).hexdigest())
        assert body not in sha and body not in md5 and pseudonym not in (sha, md5)
        chunks = _hash_substrings(text)
        assert not any(body[i : i + 8] in chunks for i in range(len(body) - 7))
