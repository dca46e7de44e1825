"""The contract stays compatible with its last release: `buf breaking` against the baseline.

`make lint` runs ``buf breaking --against protos/released/microposts.v1.binpb``;
these tests run the same check on the real contract (it passes) and on a copy
of it with a field removed (it must fail, naming the field), so a check that
could never fail would show here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "protos" / "released" / "microposts.v1.binpb"
BUF = Path(sys.executable).parent / "buf"


def buf_breaking(workspace: Path) -> subprocess.CompletedProcess[str]:
    """``buf breaking`` on the module in ``workspace`` against the released contract."""
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(BASELINE)],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_contract(folder: Path) -> Path:
    """A workspace in ``folder`` with this repository's buf.yaml and protos/."""
    shutil.copy(ROOT / "buf.yaml", folder / "buf.yaml")
    shutil.copytree(ROOT / "protos" / "microposts", folder / "protos" / "microposts")
    return folder


def test_make_lint_checks_against_the_baseline() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "BASELINE := protos/released/microposts.v1.binpb" in makefile
    assert "buf breaking --against $(BASELINE)" in makefile
    assert BASELINE.stat().st_size > 0


def test_the_contract_is_compatible_with_its_release(tmp_path: Path) -> None:
    result = buf_breaking(copy_of_contract(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_removing_a_field_fails(tmp_path: Path) -> None:
    workspace = copy_of_contract(tmp_path)
    resources = workspace / "protos" / "microposts" / "v1" / "resources.proto"
    text = resources.read_text()
    field = "  string display_name = 3;\n"
    assert field in text
    resources.write_text(text.replace(field, ""))

    result = buf_breaking(workspace)

    assert result.returncode != 0
    assert 'field "3" with name "display_name" on message "User" was deleted' in result.stdout
