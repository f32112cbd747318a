"""vhe.files: orphaned temporary files of killed writers are removed by the next write, and only
those (never a live process's, another machine's, or a file of unknown form)."""

from __future__ import annotations

import os
import subprocess
import sys

from vhe.files import _HOST, atomic_write_text, remove_orphans


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_write_removes_only_orphans(tmp_path):
    target = tmp_path / "metrics.json"
    dead, live = _dead_pid(), os.getppid()
    orphan = tmp_path / f".metrics.json.{_HOST}-{dead}.abc123xy.json"
    kept = [
        tmp_path / f".metrics.json.{_HOST}-{live}.abc123xy.json",  # a live writer
        tmp_path / f".metrics.json.otherhost-{dead}.abc123xy.json",  # another machine's
        tmp_path / f".metrics.json.{_HOST}-{dead}.abc123xy.csv",  # another target's suffix
        tmp_path / f".other.json.{_HOST}-{dead}.abc123xy.json",  # another target
        tmp_path / ".metrics.json.notes",
    ]  # unknown form
    for p in [orphan, *kept]:
        p.write_text("partial")
    atomic_write_text("{}", target)
    assert target.read_text() == "{}"
    assert not orphan.exists() and all(p.exists() for p in kept)
    # the write's own temporary file is gone too
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".metrics.json.")) == sorted(
        p.name for p in kept if p.name.startswith(".metrics.json.")
    )


def test_remove_orphans_reports_what_it_removed(tmp_path):
    target = tmp_path / "sub" / "best.pt"
    assert remove_orphans(target) == []  # no folder yet: nothing to do
    target.parent.mkdir()
    orphan = target.parent / f".best.pt.{_HOST}-{_dead_pid()}.k9_a0b1c.pt"
    orphan.write_bytes(b"\0")
    assert remove_orphans(target) == [orphan] and not orphan.exists()
