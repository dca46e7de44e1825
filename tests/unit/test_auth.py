"""``auth``: which key files load, which algorithms each key allows, and the verified-token cache.

Real keys (``cryptography``), real key files in a temporary folder and real
tokens signed with PyJWT. The one stand-in is the verifier's clock
(``tests/unit/clock.Clock``, pure logic): it stands still until the test
moves it, so expiry is checked to the second without waiting. The same
rules through a real server: tests/e2e/test_auth.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from microposts_server.auth import (
    RSA_ALGORITHMS,
    JwtAuthenticator,
    KeyFileError,
    KeySet,
    load_keys,
)
from microposts_server.domain import Principal, Unauthenticated
from microposts_server.reload import Reloadable
from tests.unit.clock import Clock

ISSUER = "https://issuer.test"
AUDIENCE = "microposts"
T0 = 1_700_000_000  # the clock's start: far from today, so only the injected clock can pass

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def public_jwk(key: rsa.RSAPrivateKey, **fields: Any) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), **fields}


def write(tmp_path: Path, data: bytes | dict[str, Any], name: str = "keys") -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return str(path)


def refused(path: str) -> str:
    with pytest.raises(KeyFileError) as err:
        load_keys(path)
    return str(err.value)


# -- what load_keys refuses -----------------------------------------------------


def test_private_keys_are_refused_as_pem_and_as_jwk(tmp_path: Path) -> None:
    key = rsa_key()
    assert "private key" in refused(write(tmp_path, private_pem(key)))
    # One private block among public ones spoils the file: nothing is half-loaded.
    mixed = public_pem(rsa_key()) + private_pem(key)
    assert "private key" in refused(write(tmp_path, mixed))
    private_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    assert "d" in private_jwk
    message = refused(write(tmp_path, {"keys": [{**private_jwk, "kid": "k1"}]}))
    assert "private key" in message
    assert "'k1'" in message
    assert private_jwk["d"] not in message


def test_symmetric_keys_are_refused(tmp_path: Path) -> None:
    jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0LWhtYWMta2V5", "kid": "hmac"}]}
    message = refused(write(tmp_path, jwks))
    assert "symmetric" in message
    assert "c2VjcmV0LWhtYWMta2V5" not in message


@pytest.mark.parametrize("bits", [1024, 2047])
def test_rsa_keys_below_2048_bits_are_refused(tmp_path: Path, bits: int) -> None:
    key = rsa_key(bits)
    assert f"{bits} bits" in refused(write(tmp_path, public_pem(key)))
    assert f"{bits} bits" in refused(write(tmp_path, {"keys": [public_jwk(key)]}))


def test_files_that_are_neither_jwks_nor_pem_are_refused(tmp_path: Path) -> None:
    assert "neither" in refused(write(tmp_path, b"ssh-rsa AAAAB3NzaC1yc2E user@host\n"))
    assert "keys" in refused(write(tmp_path, {"not": "a jwks"}))
    # Only encryption keys: nothing to verify a signature with.
    only_enc = {"keys": [public_jwk(rsa_key(), use="enc")]}
    assert "no signing keys" in refused(write(tmp_path, only_enc))


# -- which algorithms a key allows ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "algorithms"),
    [
        (ec.generate_private_key(ec.SECP256R1()), ("ES256",)),
        (ec.generate_private_key(ec.SECP384R1()), ("ES384",)),
        (ec.generate_private_key(ec.SECP521R1()), ("ES512",)),
        (ed25519.Ed25519PrivateKey.generate(), ("EdDSA",)),
        (ed448.Ed448PrivateKey.generate(), ("EdDSA",)),
        (rsa_key(), RSA_ALGORITHMS),
    ],
    ids=["P-256", "P-384", "P-521", "Ed25519", "Ed448", "RSA"],
)
def test_the_key_decides_the_algorithms(
    tmp_path: Path, key: PrivateKey, algorithms: tuple[str, ...]
) -> None:
    (loaded,) = load_keys(write(tmp_path, public_pem(key))).keys
    assert loaded.algorithms == algorithms
    assert loaded.kid is None


def test_an_ec_key_on_a_curve_jwt_does_not_use_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP224R1())
    assert "secp224r1" in refused(write(tmp_path, public_pem(key)))


def test_a_jwk_alg_pins_its_key_to_that_one_algorithm(tmp_path: Path) -> None:
    key = rsa_key()
    path = write(tmp_path, {"keys": [public_jwk(key, kid="ps", alg="PS256")]})
    (loaded,) = load_keys(path).keys
    assert (loaded.kid, loaded.algorithms) == ("ps", ("PS256",))
    verifier = authenticator(path, Clock(T0))
    pss = mint(key, "alice", kid="ps", algorithm="PS256")
    assert authenticate(verifier, pss) == Principal("alice")
    # The same key, RS256: another algorithm than the one the JWK names.
    failure = refuse(verifier, mint(key, "alice", kid="ps", algorithm="RS256"))
    assert failure.reason == "TOKEN_ALGORITHM"
    assert "PS256" in failure.message


def test_a_jwk_alg_its_key_cannot_verify_is_refused(tmp_path: Path) -> None:
    p256 = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    p256.pop("d")
    assert "names alg 'ES384'" in refused(write(tmp_path, {"keys": [{**p256, "alg": "ES384"}]}))
    # A bug this test found: alg "none" escaped load_keys as NotImplementedError (a traceback).
    assert "names alg 'none'" in refused(
        write(tmp_path, {"keys": [public_jwk(rsa_key(), alg="none")]})
    )
    for alg in ("ES256", "HS256", "EdDSA"):
        assert "not a usable JWK" in refused(
            write(tmp_path, {"keys": [public_jwk(rsa_key(), alg=alg)]})
        )


def test_several_pem_blocks_each_become_a_key(tmp_path: Path) -> None:
    rsa_signer = rsa_key()
    ec_signer = ec.generate_private_key(ec.SECP256R1())
    ca = trustme.CA()
    certificate = ca.issue_cert("issuer.test")
    data = public_pem(rsa_signer) + b"\n" + public_pem(ec_signer) + b"\n"
    data += certificate.cert_chain_pems[0].bytes()
    path = write(tmp_path, data)
    keys = load_keys(path)
    assert [k.algorithms for k in keys.keys] == [RSA_ALGORITHMS, ("ES256",), ("ES256",)]
    verifier = authenticator(path, Clock(T0))
    assert authenticate(verifier, mint(rsa_signer, "r", algorithm="RS256")) == Principal("r")
    assert authenticate(verifier, mint(ec_signer, "e", algorithm="ES256")) == Principal("e")
    leaf = load_pem_private_key(certificate.private_key_pem.bytes(), password=None)
    assert isinstance(leaf, ec.EllipticCurvePrivateKey)  # trustme's default: ECDSA P-256
    assert authenticate(verifier, mint(leaf, "c", algorithm="ES256")) == Principal("c")


# -- the verified-token cache, on the verifier's clock -----------------------------


def authenticator(path: str, clock: Clock, leeway: float = 0) -> JwtAuthenticator:
    keys: Reloadable[KeySet] = Reloadable("jwt keys", [path], lambda: load_keys(path))
    return JwtAuthenticator(keys, ISSUER, AUDIENCE, leeway, clock=clock)


def mint(
    key: PrivateKey, sub: str, *, kid: str | None = None, algorithm: str = "RS256", **claims: Any
) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": T0, "exp": T0 + 60, **claims}
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def authenticate(verifier: JwtAuthenticator, token: str) -> Principal:
    return asyncio.run(verifier.authenticate(f"Bearer {token}"))


def refuse(verifier: JwtAuthenticator, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as err:
        authenticate(verifier, token)
    assert token not in err.value.message
    return err.value


@pytest.fixture
def signer(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa_key()
    return key, write(tmp_path, {"keys": [public_jwk(key, kid="k1")]})


def test_a_cached_token_is_dropped_at_its_exp(signer: tuple[rsa.RSAPrivateKey, str]) -> None:
    key, path = signer
    clock = Clock(T0)
    verifier = authenticator(path, clock)
    token = mint(key, "alice", kid="k1", scope="openid microposts.admin")
    assert authenticate(verifier, token) == Principal("alice", admin=True)
    clock.now = T0 + 59.999  # from the cache, still valid
    assert authenticate(verifier, token) == Principal("alice", admin=True)
    clock.now = T0 + 60  # exp itself: expired (RFC 7519: on or after exp)
    assert refuse(verifier, token).reason == "TOKEN_EXPIRED"
    clock.now = T0 + 30  # and it was not put back: the clock again decides alone
    assert authenticate(verifier, token) == Principal("alice", admin=True)


def test_the_clock_skew_extends_a_cached_token_by_exactly_the_leeway(
    signer: tuple[rsa.RSAPrivateKey, str],
) -> None:
    key, path = signer
    clock = Clock(T0)
    verifier = authenticator(path, clock, leeway=30)
    token = mint(key, "bob", kid="k1")
    assert authenticate(verifier, token) == Principal("bob")
    clock.now = T0 + 89.5
    assert authenticate(verifier, token) == Principal("bob")
    clock.now = T0 + 90
    failure = refuse(verifier, token)
    assert failure.reason == "TOKEN_EXPIRED"
    assert "clock skew allowed: 30 s" in failure.message


def test_a_fractional_exp_ends_where_a_fresh_check_ends_it(
    signer: tuple[rsa.RSAPrivateKey, str],
) -> None:
    # JWT times are whole seconds to PyJWT (it truncates): the cache must not outlive that.
    key, path = signer
    clock = Clock(T0)
    verifier = authenticator(path, clock)
    token = mint(key, "carol", kid="k1", exp=T0 + 60.9)
    assert authenticate(verifier, token) == Principal("carol")
    clock.now = T0 + 60.5
    assert refuse(verifier, token).reason == "TOKEN_EXPIRED"
    assert refuse(authenticator(path, Clock(T0 + 60.5)), token).reason == "TOKEN_EXPIRED"


def test_nbf_and_iat_are_judged_on_the_same_clock(signer: tuple[rsa.RSAPrivateKey, str]) -> None:
    key, path = signer
    clock = Clock(T0)
    verifier = authenticator(path, clock, leeway=5)
    early = mint(key, "dave", kid="k1", nbf=T0 + 10)
    assert refuse(verifier, early).reason == "TOKEN_NOT_YET_VALID"
    issued_later = mint(key, "dave", kid="k1", iat=T0 + 10)
    assert refuse(verifier, issued_later).reason == "TOKEN_NOT_YET_VALID"
    clock.now = T0 + 5  # within the 5 s of skew
    assert authenticate(verifier, early) == Principal("dave")
    assert authenticate(verifier, issued_later) == Principal("dave")
