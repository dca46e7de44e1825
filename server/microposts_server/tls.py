"""TLS files: the server's certificate chain and key, and the client CA for mTLS.

``load_material`` reads and checks them with ``cryptography`` before gRPC
ever sees them: every PEM block parses, the key is unencrypted and belongs
to the first certificate of the chain, the client CA holds certificates. A
file that fails names its setting and says why. ``watch`` wraps that in a
``reload.Reloadable``, so a rotated file is picked up for new connections
and a bad one keeps the material in use (``app.server_credentials`` hands it
to gRPC's dynamic credentials, which ask on every new connection).

No gRPC here: the settings are checked with it before anything starts, in
the ``--workers`` supervisor too, which never loads gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from .reload import Reloadable


class TlsFileError(ValueError):
    """A TLS file cannot be used; the message names the setting, the file and why."""

    def __init__(self, flag: str, path: str, reason: str) -> None:
        self.flag = flag
        super().__init__(f"{flag}: {path}: {reason}")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the PEM files are; ``client_ca`` empty means no client certificates asked."""

    cert: str
    key: str
    client_ca: str = ""

    @property
    def paths(self) -> list[str]:
        return [p for p in (self.cert, self.key, self.client_ca) if p]


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The checked PEM bytes, as gRPC takes them."""

    chain: bytes
    key: bytes
    client_ca: bytes | None


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(flag, path, exc.strerror or str(exc)) from None


def _certificates(flag: str, path: str, data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsFileError(
            flag, path, "not PEM certificates (-----BEGIN CERTIFICATE-----)"
        ) from None
    return certs


def load_material(files: TlsFiles) -> TlsMaterial:
    """The files' contents, checked; ``TlsFileError`` on the first problem."""
    chain = _read("--tls-cert", files.cert)
    leaf = _certificates("--tls-cert", files.cert, chain)[0]
    key_pem = _read("--tls-key", files.key)
    try:
        key = load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsFileError(
            "--tls-key", files.key, "the key is encrypted; give it unencrypted"
        ) from None
    except ValueError:
        raise TlsFileError("--tls-key", files.key, "not a PEM private key") from None
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise TlsFileError(
            "--tls-key", files.key, f"this key does not belong to the certificate in {files.cert}"
        )
    client_ca = None
    if files.client_ca:
        client_ca = _read("--tls-client-ca", files.client_ca)
        _certificates("--tls-client-ca", files.client_ca, client_ca)
    return TlsMaterial(chain, key_pem, client_ca)


def watch(files: TlsFiles) -> Reloadable[TlsMaterial]:
    """The material, loaded now and again whenever one of the files changes."""
    return Reloadable("tls certificates", files.paths, lambda: load_material(files))
