"""Who may write what, at the use cases: decided before the store is touched.

The store here is a stand-in that fails the test on any use (a fake, on
purpose: a real store cannot report "nobody asked me"). Each denied call
must fail with PermissionDenied without reaching it; the real-server checks
of the same rules are in tests/e2e/test_auth.py.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

import pytest

from microposts_server.domain import (
    UNRESTRICTED,
    InvalidArgument,
    PermissionDenied,
    Principal,
)
from microposts_server.page_tokens import PageTokens
from microposts_server.service import Service

ALICE = Principal("alice")
POST = "users/bob/microposts/01j9zzzzzzzzzzzzzzzzzzzzzz"


class UntouchableStore:
    """Any attribute read fails the test: the use case went to the store."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was touched ({name}) before permission was checked")


def service() -> Service:
    return Service(UntouchableStore(), PageTokens(b"k" * 32))


def denied(call: Awaitable[Any]) -> PermissionDenied:
    with pytest.raises(PermissionDenied) as err:
        asyncio.run(call)  # type: ignore[arg-type]
    return err.value


def test_alice_may_not_write_as_bob() -> None:
    s = service()
    err = denied(s.create_user("bob", "", "r1", caller=ALICE))
    assert (err.permission, err.resource_name) == ("microposts.users.create", "users/bob")
    err = denied(s.create_micropost("users/bob", "hi", "r2", caller=ALICE))
    assert (err.permission, err.resource_name) == ("microposts.microposts.create", "users/bob")
    err = denied(s.update_micropost(POST, "x", "", [], caller=ALICE))
    assert (err.permission, err.resource_name) == ("microposts.microposts.update", POST)
    err = denied(s.delete_micropost(POST, "", caller=ALICE))
    assert err.message == (
        f"Permission 'microposts.microposts.delete' denied on resource '{POST}' "
        "(or it might not exist)"
    )


def test_permission_comes_before_the_rest_of_validation() -> None:
    # Text too long and a bad request id: still PERMISSION_DENIED, the resource is not hers.
    denied(service().create_micropost("users/bob", "x" * 1000, "\x00", caller=ALICE))


def test_a_name_that_does_not_parse_is_invalid_whoever_asks() -> None:
    with pytest.raises(InvalidArgument) as err:
        asyncio.run(service().delete_micropost("users/bob/posts/1", "", caller=ALICE))
    assert [v.field for v in err.value.violations] == ["name"]


def test_owners_and_administrators_get_past_the_check() -> None:
    # Past the permission check, the use case goes on to the store: it was allowed.
    for caller in (Principal("bob"), Principal("mod", admin=True), UNRESTRICTED):
        with pytest.raises(AssertionError, match="store was touched"):
            asyncio.run(service().delete_micropost(POST, "", caller=caller))


@pytest.mark.parametrize(
    "use_case", ["create_user", "create_micropost", "update_micropost", "delete_micropost"]
)
def test_every_write_needs_its_caller_named(use_case: str) -> None:
    # No default: a servicer that forgets ``caller`` must not write as UNRESTRICTED.
    parameter = inspect.signature(getattr(Service, use_case)).parameters["caller"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is inspect.Parameter.empty
    positional: tuple[Any, ...] = {
        "create_user": ("bob", "", "r1"),
        "create_micropost": ("users/bob", "hi", "r2"),
        "update_micropost": (POST, "x", "", []),
        "delete_micropost": (POST, ""),
    }[use_case]
    with pytest.raises(TypeError, match="caller"):
        getattr(service(), use_case)(*positional)
