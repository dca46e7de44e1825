"""Real credentials for tests: certificates from trustme, JWTs signed with PyJWT.

``Pki`` writes a throwaway CA, a server certificate (localhost, 127.0.0.1,
::1) and a client certificate to PEM files, and gives the server flags and
the client credentials that use them. ``Issuer`` is a token issuer: an RSA
key (more can be added: rotation), the JWKS file the server reads, and
tokens minted for any ``sub``, ``scope`` and claims, valid unless told
otherwise. ``Secured`` is both at once: TLS and ``--auth jwt`` for a
server, and the channel credentials of a caller with a token.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ISSUER = "https://issuer.test"
AUDIENCE = "microposts"


def write_atomic(path: Path, data: bytes) -> None:
    """Replaces ``path`` in one step, as a deployment tool rotating a file would."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Pki:
    """A CA with a server and a client certificate, as PEM files in ``folder``."""

    def __init__(self, folder: Path, name: str = "pki") -> None:
        self.folder = folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_pem = self.folder / "ca.pem"
        self.cert = self.folder / "server.pem"
        self.key = self.folder / "server.key"
        self.client_cert = self.folder / "client.pem"
        self.client_key = self.folder / "client.key"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.issue_server(self.ca)
        client = self.ca.issue_cert("client@example.test", common_name="client-svc")
        client.private_key_pem.write_to_path(str(self.client_key))
        self.client_cert.write_bytes(b"".join(b.bytes() for b in client.cert_chain_pems))

    def issue_server(self, ca: trustme.CA) -> None:
        """(Re)writes the server's certificate and key, signed by ``ca``, each file in one step."""
        cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
        write_atomic(self.cert, b"".join(b.bytes() for b in cert.cert_chain_pems))
        write_atomic(self.key, cert.private_key_pem.bytes())

    def server_args(self, mtls: bool = False) -> list[str]:
        """The server flags that serve TLS (and require client certificates with ``mtls``)."""
        args = ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]
        return [*args, "--tls-client-ca", str(self.ca_pem)] if mtls else args

    def credentials(self, client_cert: bool = False) -> grpc.ChannelCredentials:
        """Channel credentials trusting this CA (presenting the client certificate if asked)."""
        if not client_cert:
            return grpc.ssl_channel_credentials(self.ca_pem.read_bytes())
        return grpc.ssl_channel_credentials(
            self.ca_pem.read_bytes(), self.client_key.read_bytes(), self.client_cert.read_bytes()
        )


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


class Issuer:
    """Signs tokens and publishes its public keys as a JWKS file the server watches."""

    def __init__(self, folder: Path) -> None:
        self.jwks = folder / "jwks.json"
        self.keys: dict[str, rsa.RSAPrivateKey] = {"k1": new_rsa_key()}
        self.minted: list[str] = []  # every token made, to look for in logs
        self.publish()

    def publish(self) -> None:
        """Writes the JWKS with every key in ``keys`` (in one step)."""
        entries = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            entries.append({**jwk, "kid": kid, "use": "sig"})
        write_atomic(self.jwks, json.dumps({"keys": entries}).encode())

    def server_args(self, skew: float | None = None) -> list[str]:
        """The server flags for ``--auth jwt`` against this issuer."""
        args = ["--auth", "jwt", "--jwt-keys", str(self.jwks)]
        args += ["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE]
        return [*args, "--jwt-clock-skew", str(skew)] if skew is not None else args

    def token(
        self,
        sub: str,
        /,
        *,
        scope: str = "",
        kid: str = "k1",
        lifetime: float = 300,
        **claims: Any,
    ) -> str:
        """A token for ``sub``, valid for ``lifetime`` seconds.

        ``claims`` add or override (``sub=None`` too); a claim set to None is left out.
        """
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + int(lifetime),
        }
        if scope:
            payload["scope"] = scope
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        token = jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})
        self.minted.append(token)
        return token

    def admin_token(self, sub: str = "admin") -> str:
        """A token whose scope makes its caller an administrator."""
        return self.token(sub, scope="openid microposts.admin")


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Secured:
    """``--auth jwt`` (``issuer``), over TLS (``pki``; None: plaintext loopback), mTLS if asked."""

    issuer: Issuer
    pki: Pki | None
    client_certificates: bool = False

    @classmethod
    def create(cls, folder: Path, tls: bool = True, mtls: bool = False) -> Secured:
        return cls(Issuer(folder), Pki(folder) if tls or mtls else None, mtls)

    def settings(self) -> dict[str, Any]:
        """``microposts_server.config.Settings`` fields that turn them on."""
        fields: dict[str, Any] = {
            "auth": "jwt",
            "jwt_keys": str(self.issuer.jwks),
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
        }
        if self.pki is not None:
            fields |= {"tls_cert": str(self.pki.cert), "tls_key": str(self.pki.key)}
        if self.client_certificates and self.pki is not None:
            fields["tls_client_ca"] = str(self.pki.ca_pem)
        return fields

    def channel_credentials(self, token: str) -> grpc.ChannelCredentials:
        """TLS trusting the test CA (or local credentials), with ``token`` on every call."""
        if self.pki is None:
            channel = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        else:
            channel = self.pki.credentials(client_cert=self.client_certificates)
        return grpc.composite_channel_credentials(
            channel, grpc.access_token_call_credentials(token)
        )
