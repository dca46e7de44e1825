"""Every method, through the real app in this process over a real socket, on every store.

The module's shared server runs once more with TLS and --auth jwt on (the
stubs call with an administrator's token): the contract holds the same.
"""

from __future__ import annotations

import itertools
import os
import re

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import micropost_service_pb2_grpc as mgrpc
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests.appserver import AppServer
from tests.rpcutil import failure_of

_names = itertools.count()
PREFIX = "t" + os.urandom(2).hex()
NAME_RE = re.compile(r"users/[a-z0-9_]+/microposts/[0-9a-z]{26}")
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def shared_server(shared_server_also_secured: AppServer) -> AppServer:
    """Every store, then SQLite with TLS + JWT (see ``shared_server_also_secured``)."""
    return shared_server_also_secured


def fresh_username() -> str:
    """A username no other test uses (tests share one server per module)."""
    return f"{PREFIX}_{next(_names)}"


def make_user(users: ugrpc.UserServiceStub, display_name: str = "") -> rpb.User:
    username = fresh_username()
    return users.CreateUser(
        upb.CreateUserRequest(user=rpb.User(username=username, display_name=display_name)),
        timeout=10,
    )


def post(posts: mgrpc.MicropostServiceStub, parent: str, text: str, rid: str = "") -> rpb.Micropost:
    return posts.CreateMicropost(
        mpb.CreateMicropostRequest(
            parent=parent, micropost=rpb.Micropost(text=text), request_id=rid
        ),
        timeout=10,
    )


# -- users ---------------------------------------------------------------------


def test_create_and_get_user(users: ugrpc.UserServiceStub) -> None:
    user = make_user(users, "Ada Lovelace")
    assert user.name == f"users/{user.username}"
    assert user.display_name == "Ada Lovelace"
    assert user.create_time.seconds > 1_700_000_000
    assert users.GetUser(upb.GetUserRequest(name=user.name), timeout=10) == user


def test_create_user_taken_is_already_exists(users: ugrpc.UserServiceStub) -> None:
    user = make_user(users)
    f = failure_of(
        users.CreateUser, upb.CreateUserRequest(user=rpb.User(username=user.username)), timeout=10
    )
    assert f.code == Code.ALREADY_EXISTS
    info = f.detail(error_details_pb2.ResourceInfo)
    assert info.resource_name == user.name
    assert info.resource_type == "microposts.v1.User"


@pytest.mark.parametrize(
    ("user", "fields"),
    [
        (rpb.User(username="ab"), ["user.username"]),
        (rpb.User(username="Alice"), ["user.username"]),
        (rpb.User(username="a" * 31), ["user.username"]),
        (rpb.User(username="bad-name"), ["user.username"]),
        (rpb.User(username=""), ["user.username"]),
        (rpb.User(username="okname", display_name="x" * 101), ["user.display_name"]),
        (rpb.User(username="no", display_name="x" * 101), ["user.username", "user.display_name"]),
    ],
)
def test_create_user_validation(
    users: ugrpc.UserServiceStub, user: rpb.User, fields: list[str]
) -> None:
    f = failure_of(users.CreateUser, upb.CreateUserRequest(user=user), timeout=10)
    assert f.code == Code.INVALID_ARGUMENT
    assert f.fields == fields


def test_create_user_request_id_replays(users: ugrpc.UserServiceStub) -> None:
    username = fresh_username()
    req = upb.CreateUserRequest(user=rpb.User(username=username), request_id="rid-user-1")
    first = users.CreateUser(req, timeout=10)
    assert users.CreateUser(req, timeout=10) == first  # not ALREADY_EXISTS: the same result
    other = upb.CreateUserRequest(
        user=rpb.User(username=username, display_name="changed"), request_id="rid-user-1"
    )
    f = failure_of(users.CreateUser, other, timeout=10)
    assert f.code == Code.INVALID_ARGUMENT
    assert f.fields == ["request_id"]


def test_get_user_not_found(users: ugrpc.UserServiceStub) -> None:
    f = failure_of(users.GetUser, upb.GetUserRequest(name="users/nobody_here"), timeout=10)
    assert f.code == Code.NOT_FOUND
    assert f.detail(error_details_pb2.ResourceInfo).resource_name == "users/nobody_here"


@pytest.mark.parametrize(
    "name", ["", "users/", "users//x", "users/../x", "accounts/alice", "users/alice/extra", "alice"]
)
def test_get_user_malformed_name(users: ugrpc.UserServiceStub, name: str) -> None:
    f = failure_of(users.GetUser, upb.GetUserRequest(name=name), timeout=10)
    assert f.code == Code.INVALID_ARGUMENT
    assert f.fields == ["name"]


def test_list_users_pages_in_username_order(server: AppServer) -> None:
    users = server.users  # a store of its own: this test lists every user
    names = ["delta", "alpha", "charlie", "bravo", "echo"]
    for n in names:
        users.CreateUser(upb.CreateUserRequest(user=rpb.User(username=n)), timeout=10)
    seen: list[str] = []
    token = ""
    sizes = iter([2, 1, 5])  # page_size may change between pages (AIP-158)
    while True:
        resp = users.ListUsers(
            upb.ListUsersRequest(page_size=next(sizes), page_token=token), timeout=10
        )
        seen += [u.username for u in resp.users]
        token = resp.next_page_token
        if not token:
            break
    assert seen == sorted(names)
    everyone = users.ListUsers(upb.ListUsersRequest(), timeout=10)  # 0 -> default 50
    assert [u.username for u in everyone.users] == sorted(names)
    assert everyone.next_page_token == ""


def test_list_users_bad_paging(users: ugrpc.UserServiceStub) -> None:
    f = failure_of(users.ListUsers, upb.ListUsersRequest(page_size=-1), timeout=10)
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["page_size"])
    for token in ["garbage", "AAAA", "x" * 500, "%%%"]:
        f = failure_of(users.ListUsers, upb.ListUsersRequest(page_token=token), timeout=10)
        assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["page_token"])


def test_list_users_tampered_token(users: ugrpc.UserServiceStub) -> None:
    make_user(users)
    make_user(users)
    token = users.ListUsers(upb.ListUsersRequest(page_size=1), timeout=10).next_page_token
    assert token
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    f = failure_of(users.ListUsers, upb.ListUsersRequest(page_token=flipped), timeout=10)
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["page_token"])


def test_list_users_token_probes_base64_would_forgive(users: ugrpc.UserServiceStub) -> None:
    """What a lenient base64 decoder drops or pads away is refused over the wire too."""
    make_user(users)
    make_user(users)
    token = users.ListUsers(upb.ListUsersRequest(page_size=1), timeout=10).next_page_token
    assert token
    half = len(token) // 2
    for probe in [token + "!!!!", token + "====", token + "=", token[:half] + "..." + token[half:]]:
        f = failure_of(users.ListUsers, upb.ListUsersRequest(page_token=probe), timeout=10)
        assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["page_token"]), probe
    assert users.ListUsers(upb.ListUsersRequest(page_token=token), timeout=10).users


# -- microposts ----------------------------------------------------------------


def test_create_micropost_resolves_mentions(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice, bob, carol = make_user(users), make_user(users), make_user(users)
    text = (
        f"hi @{carol.username} and @{bob.username}, again @{carol.username}; "
        f"not @nobody_zz, not mail@{bob.username}x, not @{bob.username}s"
    )
    p = post(posts, alice.name, text)
    assert NAME_RE.fullmatch(p.name) and p.name.startswith(alice.name + "/microposts/")
    assert p.text == text
    assert list(p.referenced_users) == [carol.name, bob.name]
    assert p.create_time == p.update_time
    assert p.etag
    assert posts.GetMicropost(mpb.GetMicropostRequest(name=p.name), timeout=10) == p


def test_mentions_resolved_at_write_time(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice = make_user(users)
    later = fresh_username()
    p = post(posts, alice.name, f"hello @{later}")
    assert list(p.referenced_users) == []
    users.CreateUser(upb.CreateUserRequest(user=rpb.User(username=later)), timeout=10)
    got = posts.GetMicropost(mpb.GetMicropostRequest(name=p.name), timeout=10)
    assert list(got.referenced_users) == []  # resolved when written, not when read


def test_create_micropost_unknown_parent(posts: mgrpc.MicropostServiceStub) -> None:
    f = failure_of(post, posts, "users/nobody_zz", "hello")
    assert f.code == Code.NOT_FOUND
    assert f.detail(error_details_pb2.ResourceInfo).resource_name == "users/nobody_zz"


@pytest.mark.parametrize(
    ("parent", "text", "fields"),
    [
        ("USERS/x", "hi", ["parent"]),
        ("users/../x", "hi", ["parent"]),
        ("", "hi", ["parent"]),
        ("users/okname", "", ["micropost.text"]),
        ("users/okname", "x" * 301, ["micropost.text"]),
        ("users//x", "", ["parent", "micropost.text"]),
    ],
)
def test_create_micropost_validation(
    posts: mgrpc.MicropostServiceStub, parent: str, text: str, fields: list[str]
) -> None:
    f = failure_of(post, posts, parent, text)
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, fields)


def test_text_limit_counts_characters_not_bytes(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice = make_user(users)
    text = "🦜" * 300  # 1200 bytes of UTF-8, 300 characters
    assert post(posts, alice.name, text).text == text
    f = failure_of(post, posts, alice.name, text + "x")
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["micropost.text"])


def test_sql_looking_text_is_stored_verbatim(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice = make_user(users)
    text = "'; DROP TABLE microposts; -- \" \\ %s ? $1 \x00"
    p = post(posts, alice.name, text)
    assert posts.GetMicropost(mpb.GetMicropostRequest(name=p.name), timeout=10).text == text


def test_create_micropost_request_id_replays_original(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice = make_user(users)
    first = post(posts, alice.name, "once", rid="rid-post-1")
    assert post(posts, alice.name, "once", rid="rid-post-1") == first
    # Edited, then deleted: a replay still returns what the create returned.
    edited = posts.UpdateMicropost(
        mpb.UpdateMicropostRequest(micropost=rpb.Micropost(name=first.name, text="edited")),
        timeout=10,
    )
    assert edited.text == "edited"
    assert post(posts, alice.name, "once", rid="rid-post-1") == first
    posts.DeleteMicropost(mpb.DeleteMicropostRequest(name=first.name), timeout=10)
    assert post(posts, alice.name, "once", rid="rid-post-1") == first
    listed = posts.ListMicroposts(mpb.ListMicropostsRequest(parent=alice.name), timeout=10)
    assert list(listed.microposts) == []  # the replays made no copies
    f = failure_of(post, posts, alice.name, "another text", "rid-post-1")
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["request_id"])


def test_request_id_is_scoped_to_parent(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice, bob = make_user(users), make_user(users)
    a = post(posts, alice.name, "same", rid="rid-shared")
    b = post(posts, bob.name, "same", rid="rid-shared")
    assert a.name != b.name
    assert b.name.startswith(bob.name)


def test_get_micropost_errors(
    posts: mgrpc.MicropostServiceStub, users: ugrpc.UserServiceStub
) -> None:
    alice, bob = make_user(users), make_user(users)
    p = post(posts, alice.name, "mine")
    wrong_parent = p.name.replace(alice.name, bob.name)
    for name in [f"{alice.name}/microposts/0000000000000000000000zzzz", wrong_parent]:
        f = failure_of(posts.GetMicropost, mpb.GetMicropostRequest(name=name), timeout=10)
        assert f.code == Code.NOT_FOUND
        assert f.detail(error_details_pb2.ResourceInfo).resource_name == name
    for name in ["", "users/x/microposts/", "users//microposts/x", "users/abc/posts/x", "a/b/c/d"]:
        f = failure_of(posts.GetMicropost, mpb.GetMicropostRequest(name=name), timeout=10)
        assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["name"])


def test_batch_get_keeps_request_order(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice, bob = make_user(users), make_user(users)
    a1, b1, a2 = (
        post(posts, alice.name, "a1"),
        post(posts, bob.name, "b1"),
        post(posts, alice.name, "a2"),
    )
    names = [a2.name, b1.name, a1.name, a2.name]
    resp = posts.BatchGetMicroposts(mpb.BatchGetMicropostsRequest(names=names), timeout=10)
    assert [p.name for p in resp.microposts] == names
    assert [p.text for p in resp.microposts] == ["a2", "b1", "a1", "a2"]


def test_batch_get_errors(users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub) -> None:
    alice = make_user(users)
    p = post(posts, alice.name, "here")
    missing = f"{alice.name}/microposts/0000000000000000000000zzzz"
    f = failure_of(
        posts.BatchGetMicroposts, mpb.BatchGetMicropostsRequest(names=[p.name, missing]), timeout=10
    )
    assert f.code == Code.NOT_FOUND
    assert missing in f.message
    assert f.detail(error_details_pb2.ResourceInfo).resource_name == missing
    f = failure_of(
        posts.BatchGetMicroposts,
        mpb.BatchGetMicropostsRequest(names=[p.name, p.name, "users//microposts/x"]),
        timeout=10,
    )
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["names[2]"])
    f = failure_of(
        posts.BatchGetMicroposts, mpb.BatchGetMicropostsRequest(names=[p.name] * 101), timeout=10
    )
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["names"])
    full = posts.BatchGetMicroposts(mpb.BatchGetMicropostsRequest(names=[p.name] * 100), timeout=10)
    assert len(full.microposts) == 100


def list_all(
    posts: mgrpc.MicropostServiceStub, parent: str, size: int, between_pages: object = None
) -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        resp = posts.ListMicroposts(
            mpb.ListMicropostsRequest(parent=parent, page_size=size, page_token=token), timeout=10
        )
        names += [p.name for p in resp.microposts]
        token = resp.next_page_token
        if not token:
            return names
        if callable(between_pages):
            between_pages()


def test_list_microposts_newest_first_and_stable(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice = make_user(users)
    created = [post(posts, alice.name, f"post {i}").name for i in range(7)]
    assert list_all(posts, alice.name, 3) == created[::-1]
    # Posts inserted while paging appear on no later page and shift nothing:
    # no duplicates, no skips (keyset paging on time-ordered ids).
    assert list_all(posts, alice.name, 2, lambda: post(posts, alice.name, "new")) == created[::-1]


def test_list_microposts_across_users(server: AppServer) -> None:
    users, posts = server.users, server.posts  # a store of its own: this test lists every post
    a, b = make_user(users), make_user(users)
    created = [post(posts, (a, b)[i % 2].name, f"p{i}").name for i in range(5)]
    assert list_all(posts, "users/-", 2) == created[::-1]


def test_list_microposts_errors(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice, bob = make_user(users), make_user(users)
    for _ in range(3):
        post(posts, alice.name, "x")
    f = failure_of(
        posts.ListMicroposts, mpb.ListMicropostsRequest(parent="users/nobody_zz"), timeout=10
    )
    assert f.code == Code.NOT_FOUND
    f = failure_of(
        posts.ListMicroposts, mpb.ListMicropostsRequest(parent=alice.name, page_size=-5), timeout=10
    )
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["page_size"])
    f = failure_of(posts.ListMicroposts, mpb.ListMicropostsRequest(parent="users"), timeout=10)
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["parent"])
    token = posts.ListMicroposts(
        mpb.ListMicropostsRequest(parent=alice.name, page_size=1), timeout=10
    ).next_page_token
    # A token is bound to its parent: it never shows another user's posts.
    for parent in [bob.name, "users/-"]:
        f = failure_of(
            posts.ListMicroposts,
            mpb.ListMicropostsRequest(parent=parent, page_token=token),
            timeout=10,
        )
        assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["page_token"])
    users_token_msg = mpb.ListMicropostsRequest(parent=alice.name, page_token=token[::-1])
    f = failure_of(posts.ListMicroposts, users_token_msg, timeout=10)
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["page_token"])


def test_update_micropost(users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub) -> None:
    alice, bob = make_user(users), make_user(users)
    p = post(posts, alice.name, "before")
    updated = posts.UpdateMicropost(
        mpb.UpdateMicropostRequest(
            micropost=rpb.Micropost(name=p.name, text=f"after @{bob.username}", etag=p.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["text"]),
        ),
        timeout=10,
    )
    assert updated.text == f"after @{bob.username}"
    assert list(updated.referenced_users) == [bob.name]
    assert updated.etag != p.etag
    assert updated.create_time == p.create_time
    assert updated.update_time.ToMicroseconds() > p.update_time.ToMicroseconds()
    assert posts.GetMicropost(mpb.GetMicropostRequest(name=p.name), timeout=10) == updated
    # Stale etag: ABORTED, and nothing changes.
    stale = mpb.UpdateMicropostRequest(
        micropost=rpb.Micropost(name=p.name, text="lost", etag=p.etag)
    )
    f = failure_of(posts.UpdateMicropost, stale, timeout=10)
    assert f.code == Code.ABORTED
    assert f.detail(error_details_pb2.ErrorInfo).reason == "ETAG_MISMATCH"
    assert posts.GetMicropost(mpb.GetMicropostRequest(name=p.name), timeout=10) == updated
    # Empty mask: every field set in the request, i.e. the text (AIP-134).
    again = posts.UpdateMicropost(
        mpb.UpdateMicropostRequest(micropost=rpb.Micropost(name=p.name, text="third")), timeout=10
    )
    assert again.text == "third"


def test_update_micropost_errors(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    alice = make_user(users)
    p = post(posts, alice.name, "x")
    cases = [
        (rpb.Micropost(name=p.name, text="y"), ["display_name"], ["update_mask.paths[0]"]),
        (rpb.Micropost(name=p.name, text="y"), ["text", "name"], ["update_mask.paths[1]"]),
        (rpb.Micropost(name=p.name), ["text"], ["micropost.text"]),
        (rpb.Micropost(name=p.name), [], ["micropost.text"]),
        (rpb.Micropost(name="users//microposts/x", text="y"), [], ["micropost.name"]),
        (rpb.Micropost(name=p.name, text="y" * 301), [], ["micropost.text"]),
    ]
    for micropost, paths, fields in cases:
        req = mpb.UpdateMicropostRequest(
            micropost=micropost, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        f = failure_of(posts.UpdateMicropost, req, timeout=10)
        assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, fields), paths
    missing = mpb.UpdateMicropostRequest(
        micropost=rpb.Micropost(
            name=f"{alice.name}/microposts/0000000000000000000000zzzz", text="y"
        )
    )
    assert failure_of(posts.UpdateMicropost, missing, timeout=10).code == Code.NOT_FOUND
    assert posts.GetMicropost(mpb.GetMicropostRequest(name=p.name), timeout=10).text == "x"


def test_delete_micropost(users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub) -> None:
    alice = make_user(users)
    p = post(posts, alice.name, "short-lived")
    edited = posts.UpdateMicropost(
        mpb.UpdateMicropostRequest(micropost=rpb.Micropost(name=p.name, text="edited")), timeout=10
    )
    f = failure_of(
        posts.DeleteMicropost, mpb.DeleteMicropostRequest(name=p.name, etag=p.etag), timeout=10
    )
    assert f.code == Code.ABORTED
    assert posts.GetMicropost(mpb.GetMicropostRequest(name=p.name), timeout=10) == edited
    posts.DeleteMicropost(mpb.DeleteMicropostRequest(name=p.name, etag=edited.etag), timeout=10)
    f = failure_of(posts.GetMicropost, mpb.GetMicropostRequest(name=p.name), timeout=10)
    assert f.code == Code.NOT_FOUND
    f = failure_of(posts.DeleteMicropost, mpb.DeleteMicropostRequest(name=p.name), timeout=10)
    assert f.code == Code.NOT_FOUND
    f = failure_of(posts.DeleteMicropost, mpb.DeleteMicropostRequest(name="nope"), timeout=10)
    assert (f.code, f.fields) == (Code.INVALID_ARGUMENT, ["name"])
