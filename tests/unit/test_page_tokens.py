"""Page tokens (AIP-158): opaque, bound to their list and parent, tamper-proof."""

from __future__ import annotations

import re

import pytest

from microposts_server.domain import InvalidArgument
from microposts_server.page_tokens import PageTokens


def test_page_tokens_are_bound_and_tamper_proof() -> None:
    tokens = PageTokens(b"secret")
    token = tokens.encode("microposts", "users/a", "cursor1")
    assert tokens.decode(token, "microposts", "users/a") == "cursor1"
    for kind, parent in [("microposts", "users/b"), ("users", "users/a")]:
        with pytest.raises(InvalidArgument):
            tokens.decode(token, kind, parent)
    with pytest.raises(InvalidArgument):
        PageTokens(b"other").decode(token, "microposts", "users/a")
    for bad in ["", "x", token[:-1] + ("A" if token[-1] != "A" else "B"), "é", "====", token * 2]:
        with pytest.raises(InvalidArgument) as err:
            tokens.decode(bad, "microposts", "users/a")
        assert err.value.violations[0].field == "page_token"


def test_a_rejected_token_names_the_field_it_came_in() -> None:
    tokens = PageTokens(b"secret")
    token = tokens.encode("users", "", "alice")
    assert tokens.decode(token, "users", "", field="next") == "alice"
    for bad, kind in [("garbage", "users"), (token, "microposts")]:
        with pytest.raises(InvalidArgument) as err:
            tokens.decode(bad, kind, "", field="next")
        assert [v.field for v in err.value.violations] == ["next"]


def test_tokens_are_url_safe_and_unpadded() -> None:
    tokens = PageTokens(b"secret")
    for cursor in ["", "a", "ab", "abc", "01hzzzcursor", "é" * 7]:
        token = tokens.encode("microposts", "users/alice", cursor)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token), token
        assert tokens.decode(token, "microposts", "users/alice") == cursor
