"""``--auth jwt``: bearer tokens checked against public keys from a file.

Every MicroPosts call must carry ``authorization: Bearer <JWT>``; health and
reflection are other services and need none. A token is accepted when:

- its signature verifies with a key from ``--jwt-keys`` (a JWKS document or
  PEM public keys or certificates), with an algorithm that **the key**
  allows: RSA keys RS256/384/512 and PS256/384/512, EC keys the one
  algorithm of their curve, Ed25519/Ed448 keys EdDSA, or exactly the
  ``alg`` a JWK names. The token's own ``alg`` header only picks among
  those, so ``alg: none`` and HS256-signed-with-the-public-key are refused.
  Symmetric and private keys are refused when the file is loaded;
- it has ``exp``, ``iss``, ``aud`` and ``sub``; ``iss`` is ``--jwt-issuer``,
  ``aud`` includes ``--jwt-audience``, and ``exp``, ``nbf`` and ``iat`` hold
  within ``--jwt-clock-skew`` seconds.

``sub`` is the caller's username; ``microposts.admin`` in the space-separated
``scope`` claim makes it an administrator. Anything else is
``UNAUTHENTICATED`` with a message that says what is wrong and an
``ErrorInfo`` reason (``CREDENTIALS_MISSING``, ``TOKEN_EXPIRED``, ...), never
echoing the token.

The key file is read off the event loop and read again when it changes
(``reload.Reloadable``): polled every ``KEY_CHECK_INTERVAL`` seconds, and at
once when a token names a key id the server does not know and the file has
changed, which is how a rotation usually shows up. Verified tokens are cached
until they expire or the keys change, so a client that reuses its token pays
for the signature check once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .domain import Principal, Unauthenticated
from .reload import Reloadable

ADMIN_SCOPE = "microposts.admin"
BEARER = "bearer "
KEY_CHECK_INTERVAL = 1.0  # seconds between looks at the key file's stat
CACHE_LIMIT = 10_000  # verified tokens remembered (cleared whole when full)
MIN_RSA_BITS = 2048

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
# Names a token's header may show back in a message; anything else is not echoed.
KNOWN_ALGORITHMS = frozenset(
    {*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA", "ES256K", "none"}
    | {"HS256", "HS384", "HS512"}
)
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.S)


class KeyFileError(ValueError):
    """The key file cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """One public key: its id (``kid``, None for PEM), the key, what algorithms it allows."""

    kid: str | None
    key: Any
    algorithms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys of one version of the key file."""

    keys: tuple[VerifyKey, ...]

    def candidates(self, kid: object) -> list[VerifyKey]:
        """The keys that may have signed a token whose header says ``kid``.

        A token naming a key id gets that key, plus any keys without ids
        (PEM); a token without one may have been signed by any.
        """
        if not isinstance(kid, str):
            return list(self.keys)
        return [k for k in self.keys if k.kid is None or k.kid == kid]

    @property
    def algorithms(self) -> list[str]:
        """Every algorithm some key allows, in a stable order (for messages)."""
        return list(dict.fromkeys(a for k in self.keys for a in k.algorithms))


def _algorithms_for(key: Any) -> tuple[str, ...]:
    """The algorithms a public key may verify, decided by the key alone."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(f"an RSA key has {key.key_size} bits; at least 2048 are needed")
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = EC_ALGORITHMS.get(key.curve.name)
        if alg is None:
            raise KeyFileError(f"an EC key is on curve {key.curve.name}, which JWT does not use")
        return (alg,)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise KeyFileError(f"a key of type {type(key).__name__} cannot verify JWTs")


def _from_jwk(jwk: Mapping[str, Any], index: int) -> VerifyKey | None:
    where = f"key {index}" + (f" (kid {jwk['kid']!r})" if isinstance(jwk.get("kid"), str) else "")
    if jwk.get("use", "sig") != "sig":
        return None  # an encryption key: not ours to use
    if jwk.get("kty") == "oct":
        raise KeyFileError(f"{where} is a symmetric key; only public keys are accepted")
    if "d" in jwk:
        raise KeyFileError(f"{where} is a private key; give the server public keys only")
    alg = jwk.get("alg")
    try:
        key = jwt.PyJWK(dict(jwk)).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise KeyFileError(f"{where} is not a usable JWK: {exc}") from None
    except NotImplementedError:  # PyJWT's "none" algorithm has no key to read
        raise KeyFileError(f"{where} names alg {alg!r}, which no key can verify") from None
    algorithms = _algorithms_for(key)
    if alg is not None:
        if alg not in algorithms:
            raise KeyFileError(f"{where} names alg {alg!r}, which its key type cannot verify")
        algorithms = (alg,)
    kid = jwk.get("kid")
    return VerifyKey(kid if isinstance(kid, str) else None, key, algorithms)


def _from_pem(block: bytes, kind: str) -> VerifyKey:
    if "PRIVATE" in kind:
        raise KeyFileError("it holds a private key; give the server public keys only")
    try:
        if kind == "CERTIFICATE":
            key: Any = x509.load_pem_x509_certificate(block).public_key()
        else:
            key = load_pem_public_key(block)
    except ValueError as exc:
        raise KeyFileError(f"a {kind} block does not load: {exc}") from None
    return VerifyKey(None, key, _algorithms_for(key))


def load_keys(path: str) -> KeySet:
    """The public keys in ``path`` (JWKS, one JWK, or PEM blocks); ``KeyFileError`` if unusable."""
    data = Path(path).read_bytes()
    keys: list[VerifyKey] = []
    if data.lstrip().startswith(b"{"):
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise KeyFileError(f"not valid JSON: {exc}") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if entries is None and isinstance(document, dict) and "kty" in document:
            entries = [document]
        if not isinstance(entries, list):
            raise KeyFileError('a JWKS document needs a "keys" list')
        for i, jwk in enumerate(entries):
            if not isinstance(jwk, dict):
                raise KeyFileError(f"key {i} is not a JSON object")
            found = _from_jwk(jwk, i)
            if found is not None:
                keys.append(found)
    else:
        blocks = [(m.group(0), m.group(1).decode()) for m in _PEM_BLOCK.finditer(data)]
        if not blocks:
            raise KeyFileError("neither a JWKS JSON document nor PEM public keys")
        keys = [_from_pem(block, kind) for block, kind in blocks]
    if not keys:
        raise KeyFileError("it holds no signing keys")
    return KeySet(tuple(keys))


@dataclass(frozen=True, slots=True)
class _Times:
    """A token's ``exp``, ``nbf`` and ``iat`` in whole seconds, read as PyJWT reads them."""

    exp: int
    nbf: int | None
    iat: int | None


def _times(claims: Mapping[str, Any]) -> _Times:
    """The time claims of verified ``claims`` (``exp`` is required); DecodeError if not numbers."""

    def whole(name: str) -> int | None:
        if name not in claims:
            return None
        try:
            return int(claims[name])  # truncates, as PyJWT does
        except (ValueError, TypeError, OverflowError):
            raise jwt.DecodeError(f"the {name!r} claim must be a number") from None

    exp = whole("exp")
    assert exp is not None  # PyJWT's "require" saw to it
    return _Times(exp, whole("nbf"), whole("iat"))


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    times: _Times
    keys: KeySet  # the key set that verified it: a cached token dies with its keys


def _refuse(message: str, reason: str) -> Unauthenticated:
    return Unauthenticated(message, reason)


def bearer_token(header: str | None) -> str:
    """The token in an ``authorization`` metadata value, or UNAUTHENTICATED saying what is wrong."""
    if header is None:
        raise _refuse(
            "missing credentials: every call needs the metadata 'authorization: Bearer <JWT>'",
            "CREDENTIALS_MISSING",
        )
    if header[:7].lower() != BEARER or not header[7:].strip():
        raise _refuse(
            "malformed credentials: the 'authorization' metadata must be 'Bearer <JWT>'",
            "CREDENTIALS_MALFORMED",
        )
    return header[7:].strip()


def _usable(keys: KeySet, kid: object, alg: str) -> list[VerifyKey]:
    """The keys that may check a token naming ``kid`` and ``alg``: the algorithm is the key's."""
    candidates = keys.candidates(kid)
    if not candidates:
        raise _UnknownKey
    usable = [k for k in candidates if alg in k.algorithms]
    if not usable:
        shown = repr(alg) if alg in KNOWN_ALGORITHMS else "an unsupported algorithm"
        raise _refuse(
            f"token rejected: it is signed with {shown}, and this server's keys accept "
            f"only {', '.join(keys.algorithms)}",
            "TOKEN_ALGORITHM",
        )
    return usable


class JwtAuthenticator:
    """Turns an ``authorization`` header into a ``Principal``, or raises ``Unauthenticated``.

    ``clock`` (seconds since the epoch) is the one clock every time check
    reads: ``exp``, ``nbf`` and ``iat`` of a new token and of a cached one
    alike, with PyJWT's rules (whole seconds; expired on and after ``exp``),
    so a cached token ends exactly where a fresh check would end it.
    """

    def __init__(
        self,
        keys: Reloadable[KeySet],
        issuer: str,
        audience: str,
        leeway: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._clock = clock
        self._cache: dict[str, _Verified] = {}
        self._reload_lock = asyncio.Lock()

    async def authenticate(self, header: str | None) -> Principal:
        """The caller a call's ``authorization`` header proves (see the module docstring)."""
        token = bearer_token(header)
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None and hit.keys is self.keys.current:
            if self._time_error(hit.times, now) is None:
                return hit.principal
            del self._cache[token]  # checked again below, for the message
        keys = self.keys.current
        try:
            return self._verify(token, now)
        except _UnknownKey:
            if not await self._reload_now(keys):
                raise self._unknown_key() from None
        try:
            return self._verify(token, now)
        except _UnknownKey:
            raise self._unknown_key() from None

    async def reload_if_changed(self) -> bool:
        """Looks at the key file off the event loop; True if new keys are now in use."""
        return await asyncio.to_thread(self.keys.check) is not None

    async def _reload_now(self, seen: KeySet) -> bool:
        """A key id not in ``seen``: if the file changed, load it now (off the event loop).

        True if other keys than ``seen`` are in use now (loaded here, or by
        another call or the poll while this one waited). Unknown key ids cost
        a ``stat`` each and nothing more while the file stays as it is, so
        tokens with made-up ids cannot keep a thread busy.
        """
        async with self._reload_lock:
            if self.keys.current is not seen:
                return True
            if not self.keys.changed():
                return False
            return await self.reload_if_changed()

    def _unknown_key(self) -> Unauthenticated:
        return _refuse(
            "token rejected: it names a signing key (kid) this server does not have",
            "TOKEN_UNKNOWN_KEY",
        )

    def _verify(self, token: str, now: float) -> Principal:
        keys = self.keys.current
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse(
                "malformed token: not a signed JWT (header.payload.signature, base64url)",
                "TOKEN_MALFORMED",
            ) from None
        alg = header.get("alg")
        alg = alg if isinstance(alg, str) else ""
        claims, times = self._decode(token, alg, _usable(keys, header.get("kid"), alg), now)
        principal = self._principal(claims)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = _Verified(principal, times, keys)
        return principal

    def _time_error(self, times: _Times, now: float) -> jwt.PyJWTError | None:
        """What is wrong with ``times`` at ``now``, PyJWT's rules on this clock; None: valid."""
        if times.iat is not None and times.iat > now + self.leeway:
            return jwt.ImmatureSignatureError("The token is not yet valid (iat)")
        if times.nbf is not None and times.nbf > now + self.leeway:
            return jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
        if times.exp <= now - self.leeway:
            return jwt.ExpiredSignatureError("Signature has expired")
        return None

    def _decode(
        self, token: str, alg: str, usable: list[VerifyKey], now: float
    ) -> tuple[dict[str, Any], _Times]:
        """The token's claims, checked with the first of ``usable`` keys its signature fits.

        PyJWT checks the signature and the other claims; the times are
        checked here, on ``now`` (PyJWT would read ``time.time`` itself).
        """
        for key in usable:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.issuer,
                    options={
                        "require": ["exp", "iss", "aud", "sub"],
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
                times = _times(claims)
                error = self._time_error(times, now)
                if error is not None:
                    raise error
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise self._claims_error(exc, token) from None
            return claims, times
        raise _refuse(
            "token rejected: its signature does not verify with this server's keys",
            "TOKEN_SIGNATURE",
        )

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise _refuse("token rejected: its 'sub' claim must be a username", "TOKEN_CLAIMS")
        scope = claims.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else []
        return Principal(sub, ADMIN_SCOPE in scopes)

    def _claims_error(self, exc: jwt.PyJWTError, token: str) -> Unauthenticated:
        """The message for a token whose signature verified but whose claims did not."""
        if isinstance(exc, jwt.ExpiredSignatureError):
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            return _refuse(
                f"token expired at {_iso(exp)} (clock skew allowed: {self.leeway:g} s); "
                "get a fresh token",
                "TOKEN_EXPIRED",
            )
        if isinstance(exc, jwt.ImmatureSignatureError):
            return _refuse(
                "token not valid yet: its 'nbf' or 'iat' is in the future "
                f"(clock skew allowed: {self.leeway:g} s)",
                "TOKEN_NOT_YET_VALID",
            )
        if isinstance(exc, jwt.InvalidIssuerError):
            return _refuse(
                f"token rejected: its issuer ('iss') is not {self.issuer!r}, "
                "the one this server trusts",
                "TOKEN_ISSUER",
            )
        if isinstance(exc, jwt.InvalidAudienceError):
            return _refuse(
                f"token rejected: its audience ('aud') does not include {self.audience!r}",
                "TOKEN_AUDIENCE",
            )
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return _refuse(f"token rejected: it has no {exc.claim!r} claim", "TOKEN_CLAIMS")
        return _refuse("malformed token: its claims are not valid JWT claims", "TOKEN_MALFORMED")


class _UnknownKey(Exception):
    """The token names a key id that is not in the key set (yet)."""


def _iso(value: object) -> str:
    if not isinstance(value, int | float):
        return "an unreadable time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


def build_authenticator(
    keys_path: str, issuer: str, audience: str, leeway: float
) -> JwtAuthenticator:
    """The authenticator for ``--auth jwt`` (reads the key file: call it off the event loop)."""
    keys = Reloadable("jwt keys", [keys_path], lambda: load_keys(keys_path))
    return JwtAuthenticator(keys, issuer, audience, leeway)
