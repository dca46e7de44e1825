"""The README's "Calling it from Python" examples run against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.appserver import AppServer

README = Path(__file__).resolve().parents[2] / "README.md"


def client_section_blocks() -> list[str]:
    """The ```python blocks between the client section's markers, in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- client:start -->")
    end = text.index("<!-- client:end -->", start)
    section = text[start:end]
    assert "## Calling it from Python" in section
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_examples_run(
    microposts_server: AppServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MICROPOSTS_TARGET", microposts_server.address)
    blocks = client_section_blocks()
    assert len(blocks) >= 4
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"README client example {number}", "exec")
        exec(code, {"__name__": f"readme_example_{number}"})
    out = capsys.readouterr().out
    assert "user.username -> " in out
    assert "missing: users/nobody" in out
    assert "budget spent: nothing was sent" in out
    assert "next: " in out  # the page example printed its first page
