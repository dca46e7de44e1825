"""Where a client connects and how long its calls may take, against a real MicroPosts server.

Targets are checked when a client is built: each bad form, made from the real
server's address, raises ValueError, and the form its message suggests
connects. Settings from the environment (MICROPOSTS_TARGET, ..._READ_TIMEOUT,
..._WRITE_TIMEOUT) fill what the arguments leave out; the server's call line
shows the deadline each call arrived with.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from microposts_client import AsyncClient, Client, Timeouts
from tests.appserver import AppServer


def works(target: str) -> None:
    """A call through a client of ``target`` reaches the server and comes back."""
    with Client(target, retry=None) as client:
        assert client.list_users_page(page_size=1).items is not None


def test_good_forms_reach_the_server(microposts_server: AppServer) -> None:
    address = microposts_server.address
    for target in (address, f"dns:///{address}", f"ipv4:{address}", [address, address]):
        works(target)  # type: ignore[arg-type]  # a list is a target too


def test_bad_forms_fail_when_built_and_show_the_form_that_works(
    microposts_server: AppServer,
) -> None:
    address = microposts_server.address  # 127.0.0.1:PORT
    host, port = address.split(":")
    bad = {
        f"http://{address}": "is a URL",
        f"https://{address}/": "TLS is chosen with credentials=",
        f"grpc://{address}": "is a URL",
        f"{address}/": "has a path",
        f"{address}/microposts.v1.UserService": "has a path",
        f"dns:///{address}/": "has a path",
        f"dns://{address}": "three slashes",
    }
    for target, problem in bad.items():
        with pytest.raises(ValueError, match=re.escape(problem)) as caught:
            Client(target)
        message = str(caught.value)
        assert repr(target) in message
        suggested = re.findall(r"use '([^']+)'", message)[-1]
        works(suggested)

    with pytest.raises(ValueError, match="has no port") as no_port:
        Client(host)
    assert f"'{host}:PORT'" in str(no_port.value)
    works(re.findall(r"'([^']+:)PORT'", str(no_port.value))[0] + port)


def test_async_client_checks_its_target_too() -> None:
    with pytest.raises(ValueError, match="has no port"):
        AsyncClient("localhost")


def sent_about(server: AppServer, request_id: str, seconds: float) -> bool:
    """Whether the call logged under ``request_id`` arrived with about ``seconds`` left.

    A little less (the time it took to arrive), or up to 1 % more: gRPC rounds
    the ``grpc-timeout`` header up to a few significant digits.
    """
    (line,) = server.logs(msg="call", request_id=request_id)
    sent: float = line["deadline_ms"] / 1000
    return seconds - 0.25 < sent <= seconds * 1.01


def test_the_environment_gives_target_and_timeouts(
    microposts_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROPOSTS_TARGET", microposts_server.address)
    monkeypatch.setenv("MICROPOSTS_READ_TIMEOUT", "0.75")
    monkeypatch.setenv("MICROPOSTS_WRITE_TIMEOUT", "3.5")
    with Client() as client:
        assert client.timeouts == Timeouts(read=0.75, write=3.5)
        client.list_users_page(metadata=[("x-request-id", "env-read")])
        client.create_user(username="env_alice", metadata=[("x-request-id", "env-write")])
    assert sent_about(microposts_server, "env-read", 0.75)
    assert sent_about(microposts_server, "env-write", 3.5)

    async def main() -> None:
        async with AsyncClient() as client:
            await client.get_user(name="users/env_alice", metadata=[("x-request-id", "env-aio")])

    asyncio.run(main())
    assert sent_about(microposts_server, "env-aio", 0.75)


def test_arguments_win_over_the_environment(
    microposts_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROPOSTS_TARGET", "127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("MICROPOSTS_READ_TIMEOUT", "0.75")
    with Client(microposts_server.address, timeout=1.25) as client:
        client.list_users_page(metadata=[("x-request-id", "args-win")])
    assert sent_about(microposts_server, "args-win", 1.25)

    # One variable set, the other kind keeps its built-in default.
    monkeypatch.delenv("MICROPOSTS_READ_TIMEOUT")
    monkeypatch.setenv("MICROPOSTS_WRITE_TIMEOUT", "3.5")
    with Client(microposts_server.address) as client:
        assert client.timeouts == Timeouts(write=3.5)


def test_bad_settings_in_the_environment_name_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MICROPOSTS_TARGET", raising=False)
    with pytest.raises(ValueError, match="MICROPOSTS_TARGET"):
        Client()
    monkeypatch.setenv("MICROPOSTS_TARGET", "http://127.0.0.1:50051")
    with pytest.raises(ValueError, match="is a URL"):
        Client()
    monkeypatch.setenv("MICROPOSTS_TARGET", "127.0.0.1:50051")
    for value in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("MICROPOSTS_WRITE_TIMEOUT", value)
        with pytest.raises(ValueError, match=f"MICROPOSTS_WRITE_TIMEOUT='{value}'"):
            Client()
