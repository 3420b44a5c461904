"""The layout (issue 2, point 1): every top-level folder says what it owns."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = [
    "postroom",
    "gateway",
    "smtp_in",
    "smtp_out",
    "realtime",
    "storage",
    "search",
    "web",
    "deploy",
    "tests",
]


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folder_explains_itself(folder: str) -> None:
    readme = ROOT / folder / "README.md"
    assert readme.is_file(), f"{folder}/ has no README.md"
    text = readme.read_text()
    assert text.startswith(f"# {folder}/"), "a README opens by naming its folder"
    assert len(text.split()) > 25, "and says in a paragraph what the folder owns"


def test_distribution_and_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "postroom"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"]["postroom"] == "postroom.cli:main"


def test_readme_opens_with_the_two_commands() -> None:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[1] == "```sh"
    assert lines[2].startswith("make run ")
    assert lines[3].startswith("make test ")
