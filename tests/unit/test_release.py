"""A release's version is said the same everywhere it must be (README, "Releasing").

Each package has one source of its version (``microposts_client/_version.py``,
``microposts_server/__init__.py``, read by the pyproject files); what must agree
with them is checked here: the server's pin on the client, the CHANGELOG, and
the tag in the README's install lines.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import microposts_client
import microposts_server

ROOT = Path(__file__).resolve().parents[2]


def pyproject(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)["project"]


def test_both_packages_have_one_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", microposts_client.__version__)
    assert microposts_server.__version__ == microposts_client.__version__


def test_the_server_requires_the_client_of_its_release() -> None:
    requirements = pyproject(ROOT / "pyproject.toml")["dependencies"]
    on_client = [r for r in requirements if r.startswith("microposts-client")]
    assert on_client == [f"microposts-client=={microposts_client.__version__}"]


def test_the_changelog_has_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(microposts_client.__version__)}\b", changelog, re.M)


def test_the_readme_pins_the_version_tag() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tags = set(re.findall(r"git\+\$REPO@(v[\w.]+)", readme))
    assert tags == {f"v{microposts_client.__version__}"}


def test_versions_and_licenses_in_the_metadata_are_read_not_repeated() -> None:
    for path in (ROOT / "pyproject.toml", ROOT / "client" / "pyproject.toml"):
        project = pyproject(path)
        assert project["dynamic"] == ["version"], path
        assert "version" not in project, path
        # An SPDX expression (setuptools >= 77), not the deprecated table.
        assert project["license"] == "Apache-2.0", path
