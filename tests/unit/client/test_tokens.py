"""Bearer tokens in the client, without a server: refresh timing and where tokens may go."""

from __future__ import annotations

import base64
import json

import pytest

from microposts_client import REFRESH_BEFORE
from microposts_client._credentials import BearerToken, channel_credentials, is_loopback
from tests.unit.clock import Clock


def unsigned_jwt(exp: float | None) -> str:
    """Enough of a JWT for the client, which only reads ``exp`` to know when to refresh."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims: dict[str, object] = {"sub": "alice"} if exp is None else {"sub": "alice", "exp": exp}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_a_callable_is_asked_again_only_near_expiry() -> None:
    clock, asked = Clock(1_000_000.0), []

    def fresh() -> str:
        asked.append(clock.now)
        return unsigned_jwt(clock.now + 600)

    token = BearerToken(fresh, clock)
    first = token()
    clock.now += 600 - REFRESH_BEFORE - 1
    assert token() == first
    assert len(asked) == 1
    clock.now += 1
    assert token() != first
    assert len(asked) == 2


def test_a_token_without_a_readable_expiry_is_asked_for_every_call() -> None:
    clock, asked = Clock(1_000_000.0), []

    def opaque() -> str:
        asked.append(clock.now)
        return "opaque-token" if len(asked) % 2 else unsigned_jwt(None)

    token = BearerToken(opaque, clock)
    for _ in range(4):
        token()
    assert len(asked) == 4


def test_a_string_is_sent_as_given_and_bad_tokens_are_refused() -> None:
    assert BearerToken("abc")() == "abc"
    with pytest.raises(ValueError, match="empty"):
        BearerToken("")
    with pytest.raises(ValueError, match="non-empty string"):
        BearerToken(lambda: "")()


@pytest.mark.parametrize(
    ("target", "loopback"),
    [
        ("localhost:50051", True),
        ("127.0.0.1:50051", True),
        ("127.8.9.10:1", True),
        ("[::1]:50051", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", True),
        ("ipv4:127.0.0.1:1,10.0.0.2:2", False),
        ("10.0.0.5:50051", False),
        ("microposts.internal:50051", False),
        ("dns://8.8.8.8/localhost:50051", False),
        ("unix:/tmp/socket", False),
    ],
)
def test_which_targets_are_loopback(target: str, loopback: bool) -> None:
    assert is_loopback(target) is loopback


def test_a_token_may_go_to_a_unix_socket_but_not_to_another_machine_in_plaintext() -> None:
    assert channel_credentials("unix:/tmp/microposts.sock", None, "t") is not None
    assert channel_credentials("10.0.0.5:50051", None, None) is None  # plaintext, no token
    with pytest.raises(ValueError, match="only sent over TLS"):
        channel_credentials("10.0.0.5:50051", None, "t")
