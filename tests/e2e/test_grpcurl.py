"""An external client in another language: the real grpcurl binary, by reflection only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ServerProcess

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
UNARY = "microposts.v1.UserService/"
POSTS = "microposts.v1.MicropostService/"


def grpcurl(
    srv: ServerProcess, *args: str, data: Any = None, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Runs grpcurl against ``srv``: ``flags`` before the address, ``args`` after it."""
    argv = [GRPCURL, "-plaintext", *flags]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    return subprocess.run([*argv, srv.address, *args], capture_output=True, text=True, timeout=30)


def ok(srv: ServerProcess, method: str, data: Any) -> Any:
    result = grpcurl(srv, method, data=data)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_and_describe(shared_server_process: ServerProcess) -> None:
    listed = grpcurl(shared_server_process, "list").stdout.split()
    assert {"microposts.v1.UserService", "microposts.v1.MicropostService"} <= set(listed)
    assert "grpc.health.v1.Health" in listed
    methods = grpcurl(
        shared_server_process, "list", "microposts.v1.MicropostService"
    ).stdout.split()
    assert len(methods) == 6
    described = grpcurl(shared_server_process, "describe", "microposts.v1.MicropostService").stdout
    assert "rpc BatchGetMicroposts ( .microposts.v1.BatchGetMicropostsRequest )" in described
    message = grpcurl(shared_server_process, "describe", "microposts.v1.Micropost").stdout
    assert "repeated string referenced_users = 3;" in message
    assert ".google.protobuf.Timestamp update_time = 5;" in message


def test_every_method(shared_server_process: ServerProcess) -> None:
    s = shared_server_process
    user = ok(s, UNARY + "CreateUser", {"user": {"username": "curl_user", "display_name": "C"}})
    assert user["name"] == "users/curl_user"
    assert ok(s, UNARY + "GetUser", {"name": "users/curl_user"}) == user
    listed = ok(s, UNARY + "ListUsers", {"page_size": 1000})
    assert user in listed["users"]
    first = ok(
        s,
        POSTS + "CreateMicropost",
        {"parent": "users/curl_user", "micropost": {"text": "hi @curl_user"}, "request_id": "c1"},
    )
    assert first["referenced_users"] == ["users/curl_user"]
    second = ok(
        s, POSTS + "CreateMicropost", {"parent": "users/curl_user", "micropost": {"text": "two"}}
    )
    assert ok(s, POSTS + "GetMicropost", {"name": first["name"]}) == first
    batch = ok(s, POSTS + "BatchGetMicroposts", {"names": [second["name"], first["name"]]})
    assert [p["name"] for p in batch["microposts"]] == [second["name"], first["name"]]
    page = ok(s, POSTS + "ListMicroposts", {"parent": "users/curl_user", "page_size": 1})
    assert [p["name"] for p in page["microposts"]] == [second["name"]]
    page2 = ok(
        s,
        POSTS + "ListMicroposts",
        {"parent": "users/curl_user", "page_token": page["next_page_token"]},
    )
    assert [p["name"] for p in page2["microposts"]] == [first["name"]]
    updated = ok(
        s,
        POSTS + "UpdateMicropost",
        {"micropost": {"name": first["name"], "text": "edited", "etag": first["etag"]}},
    )
    assert updated["text"] == "edited"
    assert ok(s, POSTS + "DeleteMicropost", {"name": first["name"], "etag": updated["etag"]}) == {}
    health = ok(s, "grpc.health.v1.Health/Check", {"service": "microposts.v1.UserService"})
    assert health == {"status": "SERVING"}


@pytest.mark.parametrize(
    ("method", "data", "code", "name"),
    [
        (UNARY + "GetUser", {"name": "users/nobody_x"}, 5, "NotFound"),
        (UNARY + "GetUser", {"name": "users//x"}, 3, "InvalidArgument"),
        (UNARY + "ListUsers", {"page_size": -1}, 3, "InvalidArgument"),
        (POSTS + "GetMicropost", {"name": "users/a/microposts/"}, 3, "InvalidArgument"),
    ],
)
def test_errors_carry_status_code_and_details(
    shared_server_process: ServerProcess, method: str, data: Any, code: int, name: str
) -> None:
    result = grpcurl(shared_server_process, method, data=data)
    assert result.returncode == 64 + code  # grpcurl's convention: 64 + the status code
    assert f"Code: {name}" in result.stderr
    assert "type.googleapis.com/google.rpc." in result.stderr


def test_grpcurl_max_time_is_the_deadline(tmp_path: Path) -> None:
    """The README's example: grpcurl -max-time sets the deadline the server sees."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    with ServerProcess(url, "--min-deadline", "0.005,GetUser=5") as srv:
        two_seconds = ("-max-time", "2")
        result = grpcurl(srv, UNARY + "GetUser", data={"name": "users/alice"}, flags=two_seconds)
        assert "Code: DeadlineExceeded" in result.stderr
        assert "before any work" in result.stderr
        assert result.returncode == 64 + 4
        result = grpcurl(
            srv, POSTS + "ListMicroposts", data={"parent": "users/-"}, flags=two_seconds
        )
        assert result.returncode == 0, result.stderr
        line = srv.wait_logs(msg="call", method="/microposts.v1.MicropostService/ListMicroposts")[0]
        assert 0 < line["deadline_ms"] <= 2000 * 1.01  # the header may round up
