"""Installs as users make them, into clean virtual environments, from this repository.

A calling service follows the README's client line (a git URL pinned to a tag,
``#subdirectory=client``, the extra ``[typing]``): it gets the client and the
stubs and nothing of the server, and ``mypy --strict`` on the README's client
examples sees the real message types there. A server, by the README's line
for it (both distributions from git) or from a checkout with
``pip install ./client .``, gets everything, the console script and uvloop
included. Neither install needs a step before it (the stubs are
committed).

The README pins the release tag; the tag of this checkout's release may not
exist yet (it is made when the release lands), so the test installs the same
line with this checkout's commit in place of the tag: what is tested is the
line's form and what it installs. The checkout's URL stands for ``$REPO``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import microposts_client
from tests.docs.test_client_readme import client_section_blocks

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MYPY = Path(sys.executable).parent / "mypy"

CLIENT_IMPORTS = """
import importlib.util, importlib.metadata
import microposts.v1.micropost_service_pb2_grpc, microposts.v1.user_service_pb2_grpc
import microposts_client
from microposts.v1 import resources_pb2
assert resources_pb2.Micropost(text="x").text == "x"
assert microposts_client.__version__ == importlib.metadata.version("microposts-client")
for absent in ("microposts_server", "uvloop", "asyncpg", "grpc_health", "grpc_reflection"):
    assert importlib.util.find_spec(absent) is None, absent + " was installed"
print("client ok", microposts_client.__file__)
"""

SERVER_IMPORTS = """
import importlib.metadata
import microposts_client, microposts_server.app, uvloop
assert microposts_server.__version__ == importlib.metadata.version("microposts-server")
print("server ok", microposts_server.__file__)
"""


def make_venv(folder: Path) -> Path:
    """A fresh virtual environment with pip; returns its python."""
    venv.create(folder, with_pip=True)
    return folder / "bin" / "python"


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


def pip_install(python: Path, *requirements: str, cwd: Path) -> None:
    done = run(python, "-m", "pip", "install", "--quiet", *requirements, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr


def readme_requirements(*, server: bool) -> list[str]:
    """The requirements of the README's git ``pip install`` line for a caller or a server."""
    text = README.replace("\\\n", " ")  # the server's line goes on to a second line
    lines = [line for line in text.splitlines() if line.startswith("pip install ")]
    (line,) = [
        line for line in lines if "#subdirectory=client" in line and server == ("-server" in line)
    ]
    return shlex.split(line.removeprefix("pip install "))


def at_this_commit(requirement: str) -> str:
    """``requirement`` from this checkout's commit instead of ``$REPO`` at the release tag."""
    tag = f"v{microposts_client.__version__}"
    assert f"@{tag}" in requirement, "the README does not pin the release tag"
    # file://localhost/...: the pip that venv installs rejects a file URL with no host.
    here = requirement.replace("git+$REPO@", f"git+file://localhost{ROOT}@")
    return here.replace(f"@{tag}", f"@{head_commit()}")


def head_commit() -> str:
    done = run("git", "rev-parse", "HEAD", cwd=ROOT)
    if done.returncode != 0:
        pytest.fail(f"not a git checkout: {done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def caller_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calling service's venv, made by the README's client line; its python."""
    (requirement,) = readme_requirements(server=False)
    tag = f"v{microposts_client.__version__}"
    expected = f"microposts-client[typing] @ git+$REPO@{tag}#subdirectory=client"
    assert requirement == expected, "the README's client line changed form"
    folder = tmp_path_factory.mktemp("caller")
    python = make_venv(folder / "venv")
    pip_install(python, at_this_commit(requirement), cwd=folder)
    return python


def test_the_callers_install_has_the_client_and_no_server(caller_venv: Path) -> None:
    done = run(caller_venv, "-c", CLIENT_IMPORTS, cwd=caller_venv.parent)
    assert done.returncode == 0, done.stderr
    assert str(caller_venv.parents[1]) in done.stdout  # from site-packages, not this checkout
    assert not (caller_venv.parent / "microposts-server").exists()


def mypy_strict(python: Path, sources: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """This venv's mypy on ``sources``, seeing only the packages installed for ``python``."""
    folder.mkdir()
    for number, source in enumerate(sources, 1):
        (folder / f"example_{number}.py").write_text(source, encoding="utf-8")
    # No config file in `folder`: the repository's mypy settings do not apply.
    return run(MYPY, "--strict", "--no-incremental", "--python-executable", python, ".", cwd=folder)


def test_mypy_strict_sees_real_types_in_the_callers_venv(caller_venv: Path, tmp_path: Path) -> None:
    examples = client_section_blocks()
    clean = mypy_strict(caller_venv, examples, tmp_path / "as-written")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    first = examples[0]
    misspelt = re.sub(r"\b(post|p)\.text\b", r"\1.txt", first)
    assert misspelt != first
    caught = mypy_strict(caller_venv, [misspelt], tmp_path / "misspelt")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert '"Micropost" has no attribute "txt"' in caught.stdout


@pytest.mark.parametrize("how", ["checkout", "readme"])
def test_a_server_install_has_everything(tmp_path: Path, how: str) -> None:
    python = make_venv(tmp_path / "venv")
    if how == "checkout":  # pip install ./client .
        pip_install(python, str(ROOT / "client"), str(ROOT), cwd=tmp_path)
    else:
        requirements = readme_requirements(server=True)
        assert any(r.startswith("microposts-server") for r in requirements)
        pip_install(python, *map(at_this_commit, requirements), cwd=tmp_path)
    done = run(python, "-c", SERVER_IMPORTS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "venv") in done.stdout  # from site-packages, not this checkout
    bad = run(tmp_path / "venv" / "bin" / "microposts-server", "--grace", "never", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--grace" in bad.stderr
