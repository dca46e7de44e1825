"""--auth jwt and who may write what (AIP-211), through a real server process.

Tokens are real JWTs signed with PyJWT (``tests/credentials.Issuer``); the
server reads the issuer's JWKS file. Bad tokens are built the ways an
attacker or a misconfigured client would: unsigned (``alg: none``), signed
HS256 with the public key as the HMAC secret, by a key the server does not
know, expired, early, for another issuer or audience. Every credential the
module sends goes through ``sent()`` (``bearer()`` calls it), so the last
test can look for each one in the server's whole stderr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import micropost_service_pb2_grpc as mgrpc
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests import credentials
from tests.credentials import AUDIENCE, ISSUER, Issuer, new_rsa_key, public_pem
from tests.rpcutil import RpcFailure, failure_of
from tests.serverproc import ServerProcess

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
Code = grpc.StatusCode

SENT: set[str] = set()
"""Every credential this module has sent to its server: none may reach the log."""


def sent(credential: str) -> str:
    """``credential``, recorded as sent (call it for anything put on the wire)."""
    SENT.add(credential)
    return credential


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying ``token``, recorded as sent."""
    return credentials.bearer(sent(token))


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def srv(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("auth-db") / "microposts.db"
    with ServerProcess(f"sqlite:///{db}", *issuer.server_args(skew=5)) as server:
        yield server


@pytest.fixture(scope="module")
def channel(srv: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(srv.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def us(channel: grpc.Channel) -> ugrpc.UserServiceStub:
    return ugrpc.UserServiceStub(channel)


@pytest.fixture(scope="module")
def ms(channel: grpc.Channel) -> mgrpc.MicropostServiceStub:
    return mgrpc.MicropostServiceStub(channel)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWT built by hand (what no honest library would sign)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b64(sign(signing_input.encode())) if sign else ""
    return f"{signing_input}.{signature}"


def good_claims(sub: str = "alice") -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300}


def get_user(us: ugrpc.UserServiceStub, token: str | None, name: str = "users/nobody") -> Any:
    metadata = bearer(token) if token is not None else None
    return us.GetUser(upb.GetUserRequest(name=name), metadata=metadata, timeout=5)


def unauthenticated(us: ugrpc.UserServiceStub, token: str | None) -> RpcFailure:
    failure = failure_of(get_user, us, token)
    assert failure.code == Code.UNAUTHENTICATED, failure
    return failure


def reason(failure: RpcFailure) -> str:
    return failure.detail(error_details_pb2.ErrorInfo).reason


# -- authentication ---------------------------------------------------------------


def test_a_valid_token_is_accepted_and_the_caller_is_logged(
    srv: ServerProcess, us: ugrpc.UserServiceStub, issuer: Issuer
) -> None:
    token = issuer.token("logged_alice")
    failure = failure_of(get_user, us, token, "users/logged_alice")
    assert failure.code == Code.NOT_FOUND  # authenticated; the user just does not exist
    (line,) = srv.wait_logs(msg="call", caller="logged_alice")
    assert line["code"] == "NOT_FOUND"


def test_missing_and_malformed_credentials(
    us: ugrpc.UserServiceStub, channel: grpc.Channel
) -> None:
    missing = unauthenticated(us, None)
    assert "authorization: Bearer <JWT>" in missing.message
    assert reason(missing) == "CREDENTIALS_MISSING"

    basic = failure_of(
        us.GetUser,
        upb.GetUserRequest(name="users/x"),
        metadata=(("authorization", f"Basic {sent('YWxpY2U6cw==')}"),),
        timeout=5,
    )
    assert basic.code == Code.UNAUTHENTICATED
    assert reason(basic) == "CREDENTIALS_MALFORMED"

    garbage = unauthenticated(us, "not.a.jwt-at-all")
    assert reason(garbage) == "TOKEN_MALFORMED"
    assert "not.a.jwt-at-all" not in garbage.message


@pytest.mark.parametrize(
    ("claims", "expected_reason", "says"),
    [
        ({"exp": int(time.time()) - 3600}, "TOKEN_EXPIRED", "token expired at"),
        ({"nbf": int(time.time()) + 3600}, "TOKEN_NOT_YET_VALID", "not valid yet"),
        ({"iss": "https://evil.test"}, "TOKEN_ISSUER", ISSUER),
        ({"aud": "someone-else"}, "TOKEN_AUDIENCE", AUDIENCE),
        ({"sub": None}, "TOKEN_CLAIMS", "'sub'"),
        ({"exp": None}, "TOKEN_CLAIMS", "'exp'"),
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-sub", "no-exp"],
)
def test_bad_claims_are_refused_saying_which(
    us: ugrpc.UserServiceStub,
    issuer: Issuer,
    claims: dict[str, Any],
    expected_reason: str,
    says: str,
) -> None:
    token = issuer.token("alice", **claims)
    failure = unauthenticated(us, token)
    assert reason(failure) == expected_reason
    assert says in failure.message
    assert token not in failure.message


def test_clock_skew_is_allowed(us: ugrpc.UserServiceStub, issuer: Issuer) -> None:
    # The server allows 5 s (--jwt-clock-skew 5): just expired still passes, well expired not.
    recent = issuer.token("skew", exp=int(time.time()) - 2)
    assert failure_of(get_user, us, recent).code == Code.NOT_FOUND
    old = issuer.token("skew", exp=int(time.time()) - 30)
    assert reason(unauthenticated(us, old)) == "TOKEN_EXPIRED"


def test_alg_none_is_refused(us: ugrpc.UserServiceStub) -> None:
    token = handmade({"alg": "none", "typ": "JWT", "kid": "k1"}, good_claims())
    failure = unauthenticated(us, token)
    assert reason(failure) == "TOKEN_ALGORITHM"
    assert "'none'" in failure.message


def test_hs256_signed_with_the_public_key_is_refused(
    us: ugrpc.UserServiceStub, issuer: Issuer
) -> None:
    # The classic confusion: the server's public key, known to all, as an HMAC secret.
    secret = public_pem(issuer.keys["k1"])
    token = handmade(
        {"alg": "HS256", "typ": "JWT", "kid": "k1"},
        good_claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    failure = unauthenticated(us, token)
    assert reason(failure) == "TOKEN_ALGORITHM"
    assert "RS256" in failure.message


def test_a_forged_signature_is_refused(us: ugrpc.UserServiceStub, issuer: Issuer) -> None:
    stranger = new_rsa_key()
    token = jwt.encode(good_claims(), stranger, algorithm="RS256", headers={"kid": "k1"})
    assert reason(unauthenticated(us, token)) == "TOKEN_SIGNATURE"
    # The same claims with a signature of the right key but tampered with.
    head, _, signature = issuer.token("alice").split(".")
    tampered = f"{head}.{b64(json.dumps(good_claims('root')).encode())}.{signature}"
    assert reason(unauthenticated(us, tampered)) == "TOKEN_SIGNATURE"


def test_an_unknown_kid_is_refused(us: ugrpc.UserServiceStub) -> None:
    token = jwt.encode(good_claims(), new_rsa_key(), algorithm="RS256", headers={"kid": "k9"})
    failure = unauthenticated(us, token)
    assert reason(failure) == "TOKEN_UNKNOWN_KEY"


def test_a_rotated_jwks_is_used_without_restart(
    srv: ServerProcess, us: ugrpc.UserServiceStub, issuer: Issuer
) -> None:
    old = issuer.token("rotation")
    issuer.keys["k2"] = new_rsa_key()
    new = issuer.token("rotation", kid="k2")
    issuer.publish()  # k1 and k2: the new key is picked up at its first use
    assert failure_of(get_user, us, new).code == Code.NOT_FOUND
    assert failure_of(get_user, us, old).code == Code.NOT_FOUND

    del issuer.keys["k1"]
    issuer.publish()  # k1 retired: its tokens stop working, even ones seen before
    deadline = time.monotonic() + 10
    while failure_of(get_user, us, old).code != Code.UNAUTHENTICATED:
        assert time.monotonic() < deadline, "the retired key was still accepted"
        time.sleep(0.1)
    assert failure_of(get_user, us, new).code == Code.NOT_FOUND
    assert srv.logs(msg="jwt keys reloaded")
    issuer.keys = {"k1": issuer.keys["k2"]}  # other tests sign with k1
    issuer.publish()
    assert failure_of(get_user, us, issuer.token("rotation")).code == Code.NOT_FOUND


def test_a_bad_new_key_file_keeps_the_keys_in_use(
    srv: ServerProcess, us: ugrpc.UserServiceStub, issuer: Issuer
) -> None:
    token = issuer.token("keeper")
    before = len(srv.logs(msg="jwt keys not reloaded; keeping the ones in use"))
    issuer.jwks.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    deadline = time.monotonic() + 10
    while len(srv.logs(msg="jwt keys not reloaded; keeping the ones in use")) == before:
        assert time.monotonic() < deadline, "the bad key file was not noticed"
        time.sleep(0.1)
    warning = srv.logs(msg="jwt keys not reloaded; keeping the ones in use")[-1]
    assert "symmetric" in warning["error"]
    assert failure_of(get_user, us, token).code == Code.NOT_FOUND
    issuer.publish()


def test_health_and_reflection_need_no_token(srv: ServerProcess, channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    listed = subprocess.run(
        [GRPCURL, "-plaintext", srv.address, "list"], capture_output=True, text=True, timeout=30
    )
    assert "microposts.v1.UserService" in listed.stdout.split()


def test_grpcurl_with_a_bearer_token(srv: ServerProcess, issuer: Issuer) -> None:
    call = [GRPCURL, "-plaintext", "-d", '{"user": {"username": "curl_alice"}}']
    method = [srv.address, "microposts.v1.UserService/CreateUser"]
    without = subprocess.run([*call, *method], capture_output=True, text=True, timeout=30)
    assert without.returncode == 64 + Code.UNAUTHENTICATED.value[0]
    assert "authorization: Bearer <JWT>" in without.stderr
    header = ["-H", f"authorization: Bearer {sent(issuer.token('curl_alice'))}"]
    created = subprocess.run([*call, *header, *method], capture_output=True, text=True, timeout=30)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == "users/curl_alice"


# -- authorization ------------------------------------------------------------


def create_user(us: ugrpc.UserServiceStub, token: str, username: str) -> rpb.User:
    return us.CreateUser(
        upb.CreateUserRequest(user=rpb.User(username=username), request_id=f"u-{username}"),
        metadata=bearer(token),
        timeout=5,
    )


def create_post(ms: mgrpc.MicropostServiceStub, token: str, parent: str, text: str) -> Any:
    request = mpb.CreateMicropostRequest(parent=parent, micropost=rpb.Micropost(text=text))
    return ms.CreateMicropost(request, metadata=bearer(token), timeout=5)


def denied(failure: RpcFailure, permission: str, resource: str) -> None:
    assert failure.code == Code.PERMISSION_DENIED, failure
    assert failure.message == (
        f"Permission '{permission}' denied on resource '{resource}' (or it might not exist)"
    )


@pytest.fixture(scope="module")
def bobs_post(
    us: ugrpc.UserServiceStub, ms: mgrpc.MicropostServiceStub, issuer: Issuer
) -> rpb.Micropost:
    bob = issuer.token("bob")
    create_user(us, bob, "bob")
    return create_post(ms, bob, "users/bob", "bob's words")


def test_users_sign_themselves_up_only(us: ugrpc.UserServiceStub, issuer: Issuer) -> None:
    alice = issuer.token("alice")
    assert create_user(us, alice, "alice").name == "users/alice"
    denied(
        failure_of(create_user, us, alice, "mallory"),
        "microposts.users.create",
        "users/mallory",
    )
    assert create_user(us, issuer.admin_token(), "mallory").name == "users/mallory"


def test_alice_cannot_post_as_bob(
    ms: mgrpc.MicropostServiceStub, issuer: Issuer, bobs_post: rpb.Micropost
) -> None:
    failure = failure_of(create_post, ms, issuer.token("alice"), "users/bob", "I am bob")
    denied(failure, "microposts.microposts.create", "users/bob")
    posts = ms.ListMicroposts(
        mpb.ListMicropostsRequest(parent="users/bob"),
        metadata=bearer(issuer.token("alice")),
        timeout=5,
    ).microposts
    assert [p.text for p in posts] == ["bob's words"]


def test_alice_cannot_change_or_delete_bobs_post(
    ms: mgrpc.MicropostServiceStub, issuer: Issuer, bobs_post: rpb.Micropost
) -> None:
    alice = bearer(issuer.token("alice"))
    update = mpb.UpdateMicropostRequest(
        micropost=rpb.Micropost(name=bobs_post.name, text="defaced", etag=bobs_post.etag)
    )
    denied(
        failure_of(ms.UpdateMicropost, update, metadata=alice, timeout=5),
        "microposts.microposts.update",
        bobs_post.name,
    )
    delete = mpb.DeleteMicropostRequest(name=bobs_post.name)
    denied(
        failure_of(ms.DeleteMicropost, delete, metadata=alice, timeout=5),
        "microposts.microposts.delete",
        bobs_post.name,
    )
    # Denied the same way whether or not the post exists: nothing leaks.
    missing = mpb.DeleteMicropostRequest(name="users/bob/microposts/0000000000000000000000000z")
    denied(
        failure_of(ms.DeleteMicropost, missing, metadata=alice, timeout=5),
        "microposts.microposts.delete",
        missing.name,
    )
    get = mpb.GetMicropostRequest(name=bobs_post.name)
    assert ms.GetMicropost(get, metadata=alice, timeout=5) == bobs_post  # unchanged


def test_permission_is_checked_before_the_store(
    srv: ServerProcess, ms: mgrpc.MicropostServiceStub, issuer: Issuer
) -> None:
    update = mpb.UpdateMicropostRequest(
        micropost=rpb.Micropost(name="users/bob/microposts/0000000000000000000000000y", text="x")
    )
    failure = failure_of(
        ms.UpdateMicropost,
        update,
        metadata=bearer(issuer.token("store_probe")),
        timeout=5,
    )
    assert failure.code == Code.PERMISSION_DENIED
    (line,) = srv.wait_logs(msg="call", caller="store_probe")
    assert line["store_calls"] == 0


def test_an_administrator_may_change_and_delete_anyones_post(
    us: ugrpc.UserServiceStub, ms: mgrpc.MicropostServiceStub, issuer: Issuer
) -> None:
    carol = issuer.token("carol")
    create_user(us, carol, "carol")
    post = create_post(ms, carol, "users/carol", "carol's words")
    admin = bearer(issuer.admin_token("moderator"))
    edited = ms.UpdateMicropost(
        mpb.UpdateMicropostRequest(micropost=rpb.Micropost(name=post.name, text="moderated")),
        metadata=admin,
        timeout=5,
    )
    assert edited.text == "moderated"
    by_admin = create_post(ms, issuer.admin_token(), "users/carol", "on carol's behalf")
    assert by_admin.name.startswith("users/carol/microposts/")
    ms.DeleteMicropost(mpb.DeleteMicropostRequest(name=post.name), metadata=admin, timeout=5)


def test_authors_change_and_delete_their_own_posts(
    us: ugrpc.UserServiceStub, ms: mgrpc.MicropostServiceStub, issuer: Issuer
) -> None:
    dave = issuer.token("dave")
    create_user(us, dave, "dave")
    post = create_post(ms, dave, "users/dave", "first")
    edited = ms.UpdateMicropost(
        mpb.UpdateMicropostRequest(micropost=rpb.Micropost(name=post.name, text="second")),
        metadata=bearer(dave),
        timeout=5,
    )
    assert edited.text == "second"
    ms.DeleteMicropost(
        mpb.DeleteMicropostRequest(name=post.name, etag=edited.etag),
        metadata=bearer(dave),
        timeout=5,
    )


def test_reads_work_for_any_valid_token(
    us: ugrpc.UserServiceStub,
    ms: mgrpc.MicropostServiceStub,
    issuer: Issuer,
    bobs_post: rpb.Micropost,
) -> None:
    stranger = bearer(issuer.token("someone_without_a_user"))
    assert us.GetUser(upb.GetUserRequest(name="users/bob"), metadata=stranger, timeout=5)
    assert us.ListUsers(upb.ListUsersRequest(), metadata=stranger, timeout=5).users
    assert ms.GetMicropost(
        mpb.GetMicropostRequest(name=bobs_post.name), metadata=stranger, timeout=5
    )
    batch = mpb.BatchGetMicropostsRequest(names=[bobs_post.name])
    assert ms.BatchGetMicroposts(batch, metadata=stranger, timeout=5).microposts
    listed = ms.ListMicroposts(
        mpb.ListMicropostsRequest(parent="users/-"), metadata=stranger, timeout=5
    )
    assert bobs_post.name in [p.name for p in listed.microposts]


# -- the log ---------------------------------------------------------------------


def test_no_credential_ever_reaches_the_log(srv: ServerProcess, issuer: Issuer) -> None:
    # Sends every kind of credential itself (so it holds run alone), then looks
    # for each one this module sent, here or in any test above, in all of stderr.
    channel = grpc.insecure_channel(srv.address)
    us = ugrpc.UserServiceStub(channel)
    stranger = new_rsa_key()
    valid = issuer.token("log_valid")
    refused = {
        "expired": issuer.token("log_expired", exp=int(time.time()) - 3600),
        "wrong issuer": issuer.token("log_issuer", iss="https://evil.test"),
        "alg none": handmade({"alg": "none", "typ": "JWT"}, good_claims("log_none")),
        "hs256": handmade(
            {"alg": "HS256", "typ": "JWT", "kid": "k1"},
            good_claims("log_hs256"),
            lambda data: hmac.new(public_pem(issuer.keys["k1"]), data, hashlib.sha256).digest(),
        ),
        "stranger key": jwt.encode(
            good_claims("log_stranger"), stranger, algorithm="RS256", headers={"kid": "k1"}
        ),
        "unknown kid": jwt.encode(
            good_claims("log_kid"), stranger, algorithm="RS256", headers={"kid": "k-unknown"}
        ),
        "malformed": f"not.a.jwt-{secrets.token_hex(16)}",
        "truncated": valid[:-12],
        "garbage": secrets.token_urlsafe(40),
    }
    try:
        assert failure_of(get_user, us, valid).code == Code.NOT_FOUND
        for kind, token in refused.items():
            assert failure_of(get_user, us, token).code == Code.UNAUTHENTICATED, kind
        basic = sent(secrets.token_urlsafe(24))
        failure = failure_of(
            us.GetUser,
            upb.GetUserRequest(name="users/x"),
            metadata=(("authorization", f"Basic {basic}"),),
            timeout=5,
        )
        assert failure.code == Code.UNAUTHENTICATED
        curl_token = sent(issuer.token("log_curl"))
        curl = [GRPCURL, "-plaintext", "-H", f"authorization: Bearer {curl_token}"]
        method = ["-d", '{"name": "users/x"}', srv.address, "microposts.v1.UserService/GetUser"]
        subprocess.run([*curl, *method], capture_output=True, timeout=30)
        # stderr is read in order: once this call's line is in, every line before it is.
        last = issuer.token("log_last")
        assert failure_of(get_user, us, last).code == Code.NOT_FOUND
        assert srv.wait_logs(msg="call", caller="log_last")
    finally:
        channel.close()

    log = "\n".join(srv.raw_lines)
    assert srv.logs(msg="call", caller="log_curl")
    assert len(srv.logs(msg="call", code="UNAUTHENTICATED")) >= len(refused) + 1
    for credential in SENT | set(issuer.minted):
        assert credential not in log
        *_, signature = credential.split(".")
        if len(signature) >= 16:  # a JWT's signature alone is enough to spot a leak
            assert signature not in log
