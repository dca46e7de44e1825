"""What TLS and JWTs cost: GetMicropost on plaintext, JWT, TLS and TLS + JWT servers.

Three more MicroPosts servers on the seeded SQLite file, each with security
turned on one way: ``--auth jwt`` (on loopback, plaintext), TLS, and both;
throwaway certificates come from trustme, the token from PyJWT with an RSA
key (RS256), valid for the whole run. h2load sends the same GetMicropost,
with the token in an ``authorization`` header, over ``https`` (ALPN h2) for
the TLS servers. Runs are interleaved with the plaintext server's, and each
row is a ratio to it, in the same run.

h2load keeps its connections for the whole run, as a client keeps its
channel, so a TLS handshake is paid once per connection, not per call; and
it sends one token throughout, as a client reuses its token until it
refreshes it, so the server verifies the signature once and then finds the
token in its cache. Both are the steady state a real client sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench import h2load, report
from bench.procs import ServerError, ServerProc
from bench.runs import Bench, Plan, Scenario, Servers, Target
from bench.seed import CALL_TIMEOUT, post_stub

ISSUER = "https://bench.invalid"
AUDIENCE = "microposts"
PLAIN = "GetMicropost, plaintext"
VARIANTS = ("JWT", "TLS", "TLS + JWT")


@dataclass
class SecureTarget(Target):
    """A target served over TLS (``https``) and/or asked with a bearer token."""

    tls: bool = False
    token: str = ""

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.port}{self.scenario.path}"


@dataclass(frozen=True)
class Credentials:
    """Throwaway TLS files, the issuer's public key, and one token."""

    cert: Path
    key: Path
    ca: bytes
    jwt_keys: Path
    token: str

    @classmethod
    def make(cls, folder: Path, lifetime: float) -> Credentials:
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        cert, key, keys = folder / "tls.pem", folder / "tls.key", folder / "jwt.pub"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keys.write_bytes(
            signer.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "iat": now}
        token = jwt.encode({**claims, "exp": now + int(lifetime)}, signer, algorithm="RS256")
        return cls(cert, key, ca.cert_pem.bytes(), keys, token)

    def server_args(self, variant: str) -> list[str]:
        args: list[str] = []
        if "TLS" in variant:
            args += ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]
        if "JWT" in variant:
            args += ["--auth", "jwt", "--jwt-keys", str(self.jwt_keys)]
            args += ["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE]
        return args


def plan(bench: Bench) -> Plan:
    """Four rows (plaintext and three variants), a warm-up and ``--repeats`` runs each."""
    a = bench.args
    rows = 1 + len(VARIANTS)
    return Plan(rows * (1 + a.repeats), rows * (2 + a.repeats * a.duration))


def _check(target: SecureTarget, ca: bytes) -> None:
    """One call from Python, as h2load will make it; a failure marks the target."""
    address = f"127.0.0.1:{target.server.port}"
    metadata = (("authorization", f"Bearer {target.token}"),) if target.token else None
    if target.tls:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))
    else:
        channel = grpc.insecure_channel(address)
    try:
        with channel:
            post_stub(channel).GetMicropost(
                target.scenario.request, metadata=metadata, timeout=CALL_TIMEOUT
            )
    except grpc.RpcError as exc:
        target.error = f"GetMicropost failed when called from Python: {exc.code().name}"


def _start(
    bench: Bench, servers: Servers, get: Target, creds: Credentials, variant: str
) -> SecureTarget:
    label = f"GetMicropost, {variant}"
    try:
        server: ServerProc = bench.microposts(label, servers.db, *creds.server_args(variant))
    except ServerError as exc:
        target = SecureTarget(label, get.server, get.scenario, get.body, get.frame_bytes)
        target.error = f"the server did not start: {str(exc).splitlines()[0]}"
        return target
    token = creds.token if "JWT" in variant else ""
    target = SecureTarget(
        label, server, get.scenario, get.body, get.frame_bytes, tls="TLS" in variant, token=token
    )
    _check(target, creds.ca)
    return target


def run(bench: Bench, servers: Servers) -> str | None:
    """Measure the four rows; the section (None without the MicroPosts server)."""
    get = servers.target_for("GetMicropost")
    if servers.server is None:
        return None
    if get is None or get.error:
        return "### TLS and JWT\n\nSkipped: GetMicropost does not work on this server."
    a = bench.args
    rows = 1 + len(VARIANTS)
    creds = Credentials.make(bench.tmp, lifetime=600 + rows * a.repeats * a.duration * 3)
    plain = report.Series(PLAIN)
    targets = [_start(bench, servers, get, creds, v) for v in VARIANTS]
    timeout = a.grpc_timeout or None
    base_load = h2load.Load(a.clients, a.streams, a.duration, timeout)

    def load_for(t: Target) -> h2load.Load:
        if isinstance(t, SecureTarget) and t.token:
            return h2load.Load(
                a.clients, a.streams, a.duration, timeout, (f"authorization: Bearer {t.token}",)
            )
        return base_load

    order: list[tuple[Target, report.Series]] = [(get, plain), *((t, t.series) for t in targets)]
    for t, _ in order:
        bench.progress.step(f"warm-up: {t.label}")
        bench.measure(t, load_for(t), report.Series("warm-up"))
    for r in range(1, a.repeats + 1):
        for t, s in order:
            bench.progress.step(f"security {r}/{a.repeats}: {t.label} ({base_load})", a.duration)
            bench.measure(t, load_for(t), s)
    for t in targets:
        t.server.stop()
    return _section(a.repeats, base_load, plain, order)


def _section(
    repeats: int, load: h2load.Load, plain: report.Series, order: list[tuple[Target, report.Series]]
) -> str:
    header = ["call", *report.RATE_COLUMNS, f"{report.TIMES} plaintext", "by CPU"]
    rows = []
    base_rps = plain.rps if plain.runs else 0.0
    for t, s in order:
        if t.error or not s.runs:
            rows.append([t.label, *["—"] * (len(header) - 2), f"failed: {t.error or 'not run'}"])
        else:
            rows.append([t.label, *report.rate_cells(s, base_rps, plain.cpu_us)])
    head = (
        f"### TLS and JWT\n\nGetMicropost on four servers over one SQLite file: plaintext "
        "(the throughput table's), `--auth jwt` (RS256, loopback), TLS, and TLS with "
        f"`--auth jwt`; h2load `{load}`, one token and long-lived connections throughout "
        f"(a client's steady state), median of {repeats}, interleaved. The ratios are to the "
        "plaintext server in this run; by CPU: its CPU per call over this one's.\n\n"
    )
    return head + report.table(header, rows, [False, *[True] * (len(header) - 1)])


SCENARIO = Scenario("security", plan, run)
"""The section's entry in ``bench.cli.RUN_ORDER``."""
