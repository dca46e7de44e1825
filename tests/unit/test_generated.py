"""Generated code is exactly what its generator makes: the stubs (`make protos`) and the
blocking client (`make unasync`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "client" / "microposts"
SYNC_CLIENT = ROOT / "client" / "microposts_client" / "_sync_client.py"


def test_stubs_match_protos(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "genprotos.py"), str(tmp_path)],
        check=True,
        timeout=60,
    )
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(GENERATED.parent): p.read_bytes()
        for p in GENERATED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(fresh) == sorted(committed), "files differ: run `make protos`"
    stale = [str(name) for name, data in fresh.items() if committed[name] != data]
    assert stale == [], f"stubs drifted from protos/: run `make protos` ({stale})"


def test_sync_client_matches_its_async_source(tmp_path: Path) -> None:
    fresh = tmp_path / "_sync_client.py"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), str(fresh)], check=True, timeout=60
    )
    assert fresh.read_text() == SYNC_CLIENT.read_text(), (
        "_sync_client.py drifted from _async_client.py: run `make unasync`"
    )


def test_buf_lint_is_clean() -> None:
    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run(
        [str(buf), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
