"""The README's Kubernetes example ("Scaling out"): what it sets exists, and it serves.

Kubernetes itself is not here, so the manifest is read as text (no YAML
library is a dependency: the example's shapes are few and fixed): every
``MICROPOSTS_*`` variable is a real setting, every file it names is under a
volume it mounts, the readiness probe asks the health service over TLS, and
the pod's grace period covers the server's drain. Then the example's own
settings, with its files made for real (trustme, a JWKS), parse as a
non-loopback deployment would (protected mode satisfied), and a server
started from them with ``--workers`` serves a token over TLS and refuses a
call without one, while health answers without a token, as the probe asks.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from microposts_client._credentials import is_loopback
from microposts_server import config
from tests.credentials import Issuer, Pki, bearer
from tests.rpcutil import failure_of
from tests.serverproc import ServerProcess

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def manifest() -> str:
    blocks = re.findall(r"```yaml\n(# EXAMPLE ONLY\n.*?)```", README, flags=re.DOTALL)
    assert len(blocks) == 1, "one Kubernetes example, marked '# EXAMPLE ONLY'"
    return str(blocks[0])


def active() -> str:
    """The manifest without its comment lines (the mTLS variable is shown commented out)."""
    return "\n".join(line for line in manifest().splitlines() if not line.lstrip().startswith("#"))


def env_values() -> dict[str, str]:
    """``MICROPOSTS_*`` name -> value as the Deployment sets it (secret refs: ``<secret>``)."""
    text = active()
    found = dict(re.findall(r"\{name: (MICROPOSTS_\w+), value: \"?([^\"}]+?)\"?\}", text))
    for name in re.findall(r"- name: (MICROPOSTS_\w+)\n\s+valueFrom:", text):
        found[name] = "<secret>"
    return found


def mounts() -> dict[str, str]:
    """volume name -> mountPath."""
    return dict(re.findall(r"\{name: (\w+), mountPath: ([^,}]+)", manifest()))


def test_every_variable_the_example_sets_is_a_setting() -> None:
    settings = {option.env for option in config.SETTINGS}
    named = set(re.findall(r"\b(MICROPOSTS_\w+)", manifest()))
    assert named, "the example sets the server's variables"
    assert named <= settings, named - settings
    assert set(env_values()) <= named


def test_every_file_the_example_names_is_on_a_mounted_volume() -> None:
    paths = set(re.findall(r"(/etc/microposts/[\w./-]+)", manifest()))
    assert paths
    mounted = mounts()
    volumes = set(re.findall(r"- name: (\w+)\n\s+(?:secret|configMap):", manifest()))
    assert set(mounted) == volumes  # each mount has its volume, each volume is mounted
    for path in paths:
        assert any(path == m or path.startswith(m + "/") for m in mounted.values()), path
    assert "subPath" not in manifest()  # files under subPath are never updated


def test_the_readiness_probe_asks_health_over_tls_and_the_grace_covers_the_drain() -> None:
    text = manifest()
    probe = text[text.index("readinessProbe:") : text.index("resources:")]
    assert "grpc_health_probe" in probe and '"-tls"' in probe
    ca = re.search(r"-tls-ca-cert=([^\"]+)", probe)
    assert ca and ca.group(1) in re.findall(r"(/etc/microposts/[\w./-]+)", text)
    assert "livenessProbe" not in text  # an outage takes pods out of rotation, not restarts them
    period = int(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))  # type: ignore[union-attr]
    grace = float(env_values().get("MICROPOSTS_GRACE", config.Settings().grace))
    assert period > grace + 1  # --grace, plus the drain's first second


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Issuer, dict[str, str]]:
    """The example's files for real, and its variables pointing at them."""
    folder = tmp_path_factory.mktemp("k8s")
    pki, issuer = Pki(folder), Issuer(folder)
    files = {
        "/etc/microposts/tls/tls.crt": str(pki.cert),
        "/etc/microposts/tls/tls.key": str(pki.key),
        "/etc/microposts/tls/ca.crt": str(pki.ca_pem),
        "/etc/microposts/jwt/jwks.json": str(issuer.jwks),
    }
    env = {name: files.get(value, value) for name, value in env_values().items()}
    env["MICROPOSTS_STORE"] = f"sqlite:///{folder / 'k8s.db'}"  # the Secret's URL
    return pki, issuer, env


def test_the_example_settings_parse_as_a_protected_deployment(
    made: tuple[Pki, Issuer, dict[str, str]],
) -> None:
    _, _, env = made
    settings = config.parse([], env=env)
    assert not is_loopback(settings.address) and not settings.insecure
    assert settings.auth == "jwt" and settings.tls_cert and settings.workers >= 2


def test_a_server_from_the_example_serves_tokens_over_tls_with_workers(
    made: tuple[Pki, Issuer, dict[str, str]],
) -> None:
    pki, issuer, env = made
    env = {k: v for k, v in env.items() if k not in ("MICROPOSTS_ADDRESS", "MICROPOSTS_STORE")}
    token = issuer.token(
        "k8s_alice", iss=env["MICROPOSTS_JWT_ISSUER"], aud=env["MICROPOSTS_JWT_AUDIENCE"]
    )
    store = f"sqlite:///{pki.folder / 'served.db'}"  # the Secret's URL, here a file
    with ServerProcess(store, env=env) as srv:  # loopback here; the example's 0.0.0.0 above
        assert srv.logs(msg="serving")[0]["workers"] == int(env["MICROPOSTS_WORKERS"])
        with grpc.secure_channel(srv.address, pki.credentials()) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            users = ugrpc.UserServiceStub(channel)
            request = upb.GetUserRequest(name="users/k8s_alice")
            refused = failure_of(users.GetUser, request, timeout=10)
            assert refused.code is grpc.StatusCode.UNAUTHENTICATED
            found = failure_of(users.GetUser, request, timeout=10, metadata=bearer(token))
            assert found.code is grpc.StatusCode.NOT_FOUND  # authenticated, and no such user
