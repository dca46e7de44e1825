"""The README's "Security" commands, run as written: openssl, PyJWT, the server, grpcurl.

The section's ```sh blocks run in order in one scratch folder, with bash:
the first makes the CA, certificates, keys and tokens (its variables carry
over); a block that starts ``microposts-server`` (re)starts the server with
those flags (on a free port of localhost); any other block runs against it
and must succeed. The ```text block's ``$`` commands run the same way, and
their output must be what the README shows.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
README_ADDRESS = "localhost:50051"
BIN = str(Path(sys.executable).parent)


def section() -> str:
    start = README.index("## Security\n")
    return README[start : README.index("\n## ", start + 1)]


def blocks() -> list[tuple[str, str]]:
    """(kind, text) of each ```sh and ```text block of the section, in order."""
    return re.findall(r"```(sh|text)\n(.*?)```", section(), flags=re.DOTALL)


def bash(script: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def server_args(block: str, folder: Path) -> list[str]:
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[0] == "microposts-server"
    return [str(folder / a) if a.startswith("certs/") else a for a in argv[1:]]


def expected_outputs(text: str) -> list[tuple[str, str]]:
    """($ command, the output shown under it) from a ```text block."""
    out: list[tuple[str, str]] = []
    for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]:
        command, _, output = chunk.partition("\n")
        out.append((command, output.strip()))
    return out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the README's commands use openssl")
def test_the_security_section_runs_as_written(tmp_path: Path) -> None:
    found = blocks()
    assert [k for k, _ in found].count("sh") >= 5
    setup = found[0][1]
    variables = re.findall(r"^(\w+)=\$\(mint ", setup, flags=re.M)
    assert variables == ["ALICE", "BOB", "ADMIN"]
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    made = bash(setup + "".join(f'echo "${v}"\n' for v in variables), tmp_path, env)
    assert made.returncode == 0, made.stderr
    env |= dict(zip(variables, made.stdout.split(), strict=True))

    srv: ServerProcess | None = None
    ran = 0
    try:
        for kind, text in found[1:]:
            if text.startswith("microposts-server"):
                if srv is not None:
                    srv.stop()
                # One store for every server: later blocks build on earlier ones.
                store = f"sqlite:///{tmp_path / 'db.sqlite'}"
                srv = ServerProcess(store, *server_args(text, tmp_path), address="localhost:0")
                srv.start()
                continue
            assert srv is not None, "a client block before any server block"
            address = f"localhost:{srv.port}"
            if kind == "sh":
                result = bash(text.replace(README_ADDRESS, address), tmp_path, env)
                assert result.returncode == 0, f"{text}\n{result.stderr}"
            else:
                for command, shown in expected_outputs(text):
                    result = bash(command.replace(README_ADDRESS, address), tmp_path, env)
                    assert (result.stdout + result.stderr).strip() == shown, command
            ran += 1
    finally:
        if srv is not None:
            srv.stop()
    assert ran >= 3
    for variable in variables:  # the tokens went to the server; never to its log
        assert env[variable] not in "\n".join(srv.raw_lines if srv else [])
