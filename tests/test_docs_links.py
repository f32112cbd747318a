"""The front door's links lead somewhere: every relative link in README.md and docs/ names a file or
folder of the checkout that git tracks (a pattern in .gitignore once hid docs/results/ from every
clone while README linked to it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _relative_links(md: Path) -> list[str]:
    return [t for t in LINK.findall(md.read_text()) if not re.match(r"^[a-z]+:", t)]


def test_relative_links_name_files_that_exist():
    missing = [
        f"{md.relative_to(ROOT)} -> {t}" for md in _docs() for t in _relative_links(md) if not (md.parent / t).exists()
    ]
    assert not missing, missing


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_linked_files_are_tracked_by_git():
    tracked = set(
        subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    )
    untracked = []
    for md in _docs():
        if str(md.relative_to(ROOT)) not in tracked:
            untracked.append(str(md.relative_to(ROOT)))
        for t in _relative_links(md):
            p = (md.parent / t).resolve()
            if p.is_file() and str(p.relative_to(ROOT)) not in tracked:
                untracked.append(f"{md.relative_to(ROOT)} -> {t}")
    assert not untracked, untracked
