"""Opaque, tamper-proof page tokens (AIP-158), bound to a list method and its parent."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from .domain import InvalidArgument

# What encode() writes: unpadded base64url. Python's decoder skips characters
# outside its alphabet and accepts padding anywhere near the end, so the
# alphabet is checked first and the token must be exactly what encode()
# would write for the bytes it decodes to (no spare bits, no "=").
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class PageTokens:
    """Encodes a list's cursor into a token only this service can have issued, and back.

    A token is base64url(HMAC-SHA256(key, payload)[:16] + payload), payload
    "kind \\x1f parent \\x1f cursor". The key lives in the store, so every
    replica on one database accepts every other's tokens. A token that fails
    its MAC, or that belongs to another method or parent, is rejected
    (INVALID_ARGUMENT, field ``page_token``): never a crash, never another
    parent's data. Nothing else is bound in: page_size may change between
    pages (AIP-158). Decoding is strict: a token changed in any way, even
    one that would decode to the same bytes, is rejected.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def encode(self, kind: str, parent: str, cursor: str) -> str:
        """The token for the page after ``cursor`` of list ``kind`` under ``parent``."""
        payload = f"{kind}\x1f{parent}\x1f{cursor}".encode()
        return base64.urlsafe_b64encode(self._mac(payload) + payload).rstrip(b"=").decode()

    def decode(self, token: str, kind: str, parent: str, field: str = "page_token") -> str:
        """The cursor in ``token``; raises InvalidArgument if it is not valid here."""
        not_ours = InvalidArgument.one(field, "is not a page token this service issued")
        if not _TOKEN.fullmatch(token):
            raise not_ours
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise not_ours from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != token.encode():
            raise not_ours  # spare bits set: another spelling of the same bytes
        mac, payload = raw[:16], raw[16:]
        if len(raw) < 18 or not hmac.compare_digest(mac, self._mac(payload)):
            raise not_ours
        got_kind, got_parent, cursor = payload.decode().split("\x1f", 2)
        if got_kind != kind or got_parent != parent:
            raise InvalidArgument.one(
                field, f"was issued for another request (parent {got_parent!r}), not this one"
            )
        return cursor
