"""A user's install: into a clean virtual environment, from this repository.

Proves that `pip install .` and `pip install git+<repo>` need no step before
them: the generated stubs, both packages and the console script arrive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import microposts.v1.micropost_service_pb2_grpc, microposts.v1.user_service_pb2_grpc
import microposts_client, microposts_server.app
from microposts.v1 import resources_pb2
assert resources_pb2.Micropost(text="x").text == "x"
print("imports ok")
"""


def _install(tmp_path: Path, spec: str) -> Path:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
        check=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    return env_dir


@pytest.mark.parametrize("how", ["path", "git"])
def test_clean_install_has_everything(tmp_path: Path, how: str) -> None:
    spec = str(ROOT) if how == "path" else f"git+file://{ROOT}"
    if how == "git" and not (ROOT / ".git").exists():
        pytest.fail("not a git checkout")
    env_dir = _install(tmp_path, spec)
    python = env_dir / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", CHECK], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "imports ok" in out.stdout
    # Imported from site-packages, not from this checkout.
    where = subprocess.run(
        [str(python), "-c", "import microposts_server; print(microposts_server.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    ).stdout
    assert str(env_dir) in where
    script = env_dir / "bin" / "microposts-server"
    bad = subprocess.run(
        [str(script), "--grace", "never"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "--grace" in bad.stderr
    assert sys.version_info >= (3, 11)
