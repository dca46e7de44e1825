"""The README's grpcurl examples, run against a real server; its settings table."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from microposts_client import method_table
from microposts_server.config import SETTINGS, default_text
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
GRPCURL = Path(sys.executable).parent / "grpcurl"
README_ADDRESS = "127.0.0.1:50051"

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
POST_ID = re.compile(r"(?<=microposts/)[0-9a-z]{26}")
ETAG = re.compile(r'(?<=\\")[0-9a-f]{8,16}(?=\\")')


def console_examples() -> list[tuple[str, str]]:
    """(command, expected output) pairs from the ```console blocks."""
    examples: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        command: list[str] = []
        output: list[str] = []
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                if command:
                    examples.append((" ".join(command), "\n".join(output)))
                command, output = [line[2:].rstrip("\\").strip()], []
                while lines[i].endswith("\\"):
                    i += 1
                    command.append(lines[i].rstrip("\\").strip())
            else:
                output.append(line)
            i += 1
        if command:
            examples.append((" ".join(command), "\n".join(output)))
    return examples


def normalise(text: str) -> str:
    text = TIME.sub("<TIME>", text)
    text = POST_ID.sub("<ID>", text)
    return ETAG.sub("<ETAG>", text).strip()


def test_readme_has_grpcurl_examples() -> None:
    commands = [c for c, _ in console_examples()]
    assert len(commands) >= 8
    for method in ["CreateUser", "CreateMicropost", "GetMicropost", "UpdateMicropost"]:
        assert any(method in c for c in commands), method


def test_grpcurl_examples_give_the_output_shown(tmp_path: Path) -> None:
    renames: dict[str, str] = {}  # README's ids and etags -> this run's
    with ServerProcess(f"sqlite:///{tmp_path / 'readme.db'}") as srv:
        for command, expected in console_examples():
            if not command.startswith("grpcurl "):
                continue
            for old, new in renames.items():
                command = command.replace(old, new)
            argv = shlex.split(command.replace(README_ADDRESS, srv.address))
            result = subprocess.run(
                [str(GRPCURL), *argv[1:]], capture_output=True, text=True, timeout=30
            )
            actual = result.stdout + result.stderr
            assert normalise(actual) == normalise(expected), command
            for pattern in (POST_ID, ETAG):
                for old, new in zip(
                    pattern.findall(expected), pattern.findall(actual), strict=True
                ):
                    renames.setdefault(old, new)


def test_settings_table_matches_the_code() -> None:
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(MICROPOSTS_[A-Z_]+)` \| `([^`]*)` \|", README, re.M)
    assert rows == [(o.flag, o.env, default_text(o)) for o in SETTINGS]


def contract_in_brief() -> dict[str, list[str]]:
    """{service: its RPCs} as the first paragraph of "The contract in brief" lists them."""
    section = README.split("## The contract in brief\n", 1)[1]
    paragraph = section.strip().split("\n\n", 1)[0]
    named: dict[str, list[str]] = {}
    # "`microposts.v1.UserService`: `CreateUser`, `GetUser`, `ListUsers`."
    for service, methods in re.findall(r"`(microposts\.v1\.\w+)`:((?:\s*`\w+`,?)+)\.", paragraph):
        named[service] = re.findall(r"`(\w+)`", methods)
    return named


def test_contract_in_brief_names_only_rpcs_of_the_contract() -> None:
    """The summary never names an RPC the contract lacks; a new one may follow it.

    A subset, not equality: adding an RPC touches the ``.proto``, its use case,
    its servicer method and tests (docs/architecture.md), and the README's line
    is a welcome fifth edit, not a gate.
    """
    in_contract: dict[str, set[str]] = {}
    for method in method_table().values():
        in_contract.setdefault(method.service, set()).add(method.name)
    named = contract_in_brief()
    assert set(named) == set(in_contract)
    for service, methods in named.items():
        assert set(methods) <= in_contract[service], service
        assert len(methods) == len(set(methods)), service  # none named twice


@pytest.mark.parametrize("target", ["run", "test"])
def test_readme_two_commands_exist_in_makefile(target: str) -> None:
    assert f"make {target}" in README
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M)
