"""Page tokens refuse every small change: the decoder is strict, not just the MAC.

Python's base64 decoder drops characters outside its alphabet and tolerates
padding, so ``<token>!!!!``, ``<token>====`` or a token with ``...`` inside
decoded to the same bytes and passed. Here every single-character insertion,
deletion and substitution of real tokens, and appended padding, is tried.
"""

from __future__ import annotations

import string

import pytest

from microposts_server.domain import InvalidArgument
from microposts_server.page_tokens import PageTokens

TOKENS = PageTokens(b"k" * 32)
# Cursors of several lengths: every remainder of len(token) % 4 occurs.
ISSUED = [
    ("microposts", "users/alice", "01j9zzzzzzzzzzzzzzzzzzzzzz"),
    ("microposts", "users/-", "01j9zzzzzzzzzzzzzzzzzzzzzy"),
    ("users", "", "bob"),
    ("users", "", "carol"),
    ("users", "", "carol_x"),
]
# The base64url alphabet, what other base64 flavours use, padding, and junk.
CHARACTERS = string.ascii_letters + string.digits + "-_+/=!. \n\x00é"


def variants(token: str) -> set[str]:
    """Every token one character away from ``token``, plus padding appended."""
    out: set[str] = set()
    for i in range(len(token) + 1):
        for c in CHARACTERS:
            out.add(token[:i] + c + token[i:])  # insertion
    for i in range(len(token)):
        out.add(token[:i] + token[i + 1 :])  # deletion
        for c in CHARACTERS:
            out.add(token[:i] + c + token[i + 1 :])  # substitution
    for pad in ("=", "==", "===", "====", "!!!!"):
        out.add(token + pad)
    out.discard(token)
    return out


@pytest.mark.parametrize(("kind", "parent", "cursor"), ISSUED)
def test_every_one_character_change_is_refused(kind: str, parent: str, cursor: str) -> None:
    token = TOKENS.encode(kind, parent, cursor)
    assert TOKENS.decode(token, kind, parent) == cursor
    accepted = []
    for changed in sorted(variants(token)):
        try:
            TOKENS.decode(changed, kind, parent)
        except InvalidArgument as exc:
            assert [v.field for v in exc.violations] == ["page_token"]
        else:
            accepted.append(changed)
    assert accepted == []


def test_the_probes_from_the_report_are_refused() -> None:
    token = TOKENS.encode("microposts", "users/alice", "01j9zzzzzzzzzzzzzzzzzzzzzz")
    middle = len(token) // 2
    for probe in (token + "!!!!", token + "====", token[:middle] + "..." + token[middle:]):
        with pytest.raises(InvalidArgument):
            TOKENS.decode(probe, "microposts", "users/alice")
