"""The method table (``microposts_client.method_table``) against the contract and the code.

Each RPC is declared once, in ``protos/``; these tests fail when the table,
the servicers or the clients disagree with it, or when a read is added to the
contract without being declared free of side effects.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts_client import AsyncClient, Client, IdempotencyLevel, method_table
from microposts_client._methods import retry_safe
from microposts_server.servicers import Servicers

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "microposts" / "v1"
SERVICE_RE = re.compile(r"^service (\w+) \{(.*?)^\}", re.S | re.M)
RPC_RE = re.compile(r"^\s*rpc (\w+)\(", re.M)
# AIP-131, AIP-132, AIP-231: the standard methods that only read.
READ_PREFIXES = ("Get", "List", "BatchGet")


def declared() -> list[tuple[str, str]]:
    """(service, method) for every rpc in the .proto files, read from their text."""
    found = []
    for path in sorted(PROTOS.glob("*.proto")):
        for service, body in SERVICE_RE.findall(path.read_text()):
            found += [(f"microposts.v1.{service}", rpc) for rpc in RPC_RE.findall(body)]
    return found


def test_the_table_is_the_contract() -> None:
    table = method_table()
    assert sorted((m.service, m.name) for m in table.values()) == sorted(declared())
    assert table["GetUser"].path == "/microposts.v1.UserService/GetUser"
    assert table["GetUser"].request_type is upb.GetUserRequest
    assert table["CreateMicropost"].response_type is rpb.Micropost


def test_reads_are_declared_free_of_side_effects() -> None:
    for method in method_table().values():
        is_read = method.name.startswith(READ_PREFIXES)
        expected = IdempotencyLevel.NO_SIDE_EFFECTS if is_read else None
        if expected is not None:
            assert method.idempotency is expected, f"{method.name}: mark it NO_SIDE_EFFECTS"
        else:
            assert method.idempotency is not IdempotencyLevel.NO_SIDE_EFFECTS, method.name
        assert method.read is is_read


def test_every_rpc_has_its_servicer_coroutine() -> None:
    handlers = Servicers(service=None).handlers()  # type: ignore[arg-type]
    assert [m.name for m, _ in handlers] == list(method_table())
    for method, handler in handlers:
        assert inspect.iscoroutinefunction(handler)
        assert handler.__name__ == method.python_name


def test_a_missing_servicer_coroutine_stops_the_server_at_start_up() -> None:
    class Incomplete(Servicers):
        get_micropost = None  # type: ignore[assignment]

    with pytest.raises(NotImplementedError, match=r"GetMicropost.*get_micropost"):
        Incomplete(service=None).handlers()  # type: ignore[arg-type]


def _public_methods(cls: type[Any]) -> set[str]:
    # Coroutine and async generator functions are functions too.
    public = {n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)}
    return public - {"close", "call"}  # call: the generic method, for any RPC


def test_the_clients_typed_methods_name_rpcs_of_the_contract() -> None:
    rpcs = {m.python_name for m in method_table().values()}
    methods = _public_methods(Client)
    # A list RPC has two methods: the item iterator, named after it, and one page, `*_page`.
    pages = {name for name in methods if name.endswith("_page")}
    assert pages == {f"{name}_page" for name in rpcs if name.startswith("list_")}
    assert methods - pages <= rpcs
    assert _public_methods(Client) == _public_methods(AsyncClient)


@pytest.mark.parametrize(
    ("method", "request_", "safe"),
    [
        ("GetUser", upb.GetUserRequest(name="users/a"), True),
        ("ListMicroposts", mpb.ListMicropostsRequest(parent="users/-"), True),
        ("CreateUser", upb.CreateUserRequest(request_id="r1"), True),
        ("CreateUser", upb.CreateUserRequest(), False),
        ("CreateMicropost", mpb.CreateMicropostRequest(request_id="r1"), True),
        ("CreateMicropost", mpb.CreateMicropostRequest(), False),
        ("UpdateMicropost", mpb.UpdateMicropostRequest(micropost=rpb.Micropost(etag='"1"')), True),
        ("UpdateMicropost", mpb.UpdateMicropostRequest(), False),
        ("DeleteMicropost", mpb.DeleteMicropostRequest(etag='"1"'), True),
        ("DeleteMicropost", mpb.DeleteMicropostRequest(), False),
    ],
)
def test_retry_safety_follows_the_contract(method: str, request_: Any, safe: bool) -> None:
    assert retry_safe(method_table()[method], request_) is safe
