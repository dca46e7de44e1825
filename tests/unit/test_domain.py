"""Domain rules: names, validation, mentions, paging, ids, etags."""

from __future__ import annotations

import pytest

from microposts_server import domain
from microposts_server.domain import InvalidArgument, MicropostName


@pytest.mark.parametrize("name", ["abc", "a_1", "x" * 30, "123"])
def test_good_usernames(name: str) -> None:
    assert domain.check_username(name, "f") == name


@pytest.mark.parametrize("name", ["ab", "x" * 31, "Abc", "a-b", "a b", "ä_bc", "", "abc\n"])
def test_bad_usernames(name: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.check_username(name, "user.username")
    assert [v.field for v in err.value.violations] == ["user.username"]


def test_parse_names() -> None:
    assert domain.parse_user_name("users/alice", "name") == "alice"
    assert domain.parse_parent("users/-") is None
    assert domain.parse_micropost_name("users/al_1/microposts/01abc", "name") == MicropostName(
        "al_1", "01abc"
    )
    for bad in ["users/al/microposts/", "users/al/microposts/A", "users/al/microposts/x/y"]:
        with pytest.raises(InvalidArgument):
            domain.parse_micropost_name(bad, "name")
    for bad in ["users/-x", "users", "users/", "/users/alice", "users/../etc"]:
        with pytest.raises(InvalidArgument):
            domain.parse_parent(bad)


def test_text_length_is_in_code_points() -> None:
    assert domain.check_text("é" * 300, "t")
    with pytest.raises(InvalidArgument):
        domain.check_text("é" * 301, "t")
    with pytest.raises(InvalidArgument):
        domain.check_text("", "t")


def test_page_size() -> None:
    assert domain.page_size(0) == 50
    assert domain.page_size(7) == 7
    assert domain.page_size(1000) == 1000
    assert domain.page_size(5000) == 1000
    with pytest.raises(InvalidArgument):
        domain.page_size(-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi @bob and @carol", ["bob", "carol"]),
        ("@bob @bob @al_1", ["bob", "al_1"]),
        ("mail@bob.com", []),
        ("@bobby is not @bob", ["bobby", "bob"]),
        ("@Bob @ab @" + "x" * 31, []),
        ("(@bob), @carol!", ["bob", "carol"]),
    ],
)
def test_mentions(text: str, expected: list[str]) -> None:
    assert domain.mentions(text) == expected


def test_ids_are_ordered_unique_and_opaque() -> None:
    gen = domain.IdGenerator()
    same_ms = [gen.new(1_700_000_000_000) for _ in range(1000)]
    later = gen.new(1_700_000_000_001)
    assert len(set(same_ms)) == 1000
    assert same_ms == sorted(same_ms)
    assert later > same_ms[-1]
    assert all(domain.MICROPOST_ID_RE.fullmatch(i) and len(i) == 26 for i in same_ms)
    # A clock that steps back never produces an older id.
    assert gen.new(1_600_000_000_000) > later


def test_etags_change_with_every_update() -> None:
    post = domain.Micropost("alice", "01abc", "hi", (), 1_000, 1_000, 1)
    again = domain.Micropost("alice", "01abc", "hi", (), 1_000, 1_000, 1)
    edited = domain.Micropost("alice", "01abc", "ho", (), 1_000, 1_001, 2)
    assert post.etag == again.etag
    assert post.etag != edited.etag
    assert post.etag.startswith('"')
    assert post.etag.endswith('"')


def test_fingerprint_separates_fields() -> None:
    assert domain.fingerprint("ab", "c") != domain.fingerprint("a", "bc")
    assert domain.fingerprint("a") == domain.fingerprint("a")
