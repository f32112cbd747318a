"""Inputs cannot run code or write outside the run: every value reaching a shell is quoted, and a
bad name or path in a config stops the workflow, naming the key and where it came from, before
anything is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.pipeline.helpers import REPO, SMOKE, snakemake

RULE_FILES = sorted((REPO / "rules").glob("*.smk")) + [REPO / "Snakefile"]
#: placeholders that are never user input: the job's thread count (an int Snakemake computes)
UNQUOTED_OK = {"threads"}


def shell_commands(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every `shell:` block of a rule file: the lines indented below it."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() != "shell:":
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            block.append(nxt)
        out.append((i + 1, "\n".join(block)))
    return out


def unquoted_placeholders(command: str) -> list[str]:
    """Single-brace Snakemake placeholders without the `:q` quoting modifier ({{ }} are literal braces)."""
    text = command.replace("{{", "").replace("}}", "")
    return [m for m in re.findall(r"\{([^{}]+)\}", text) if not m.endswith(":q") and m not in UNQUOTED_OK]


def test_the_scanner_finds_unquoted_placeholders():
    assert unquoted_placeholders('"cmd {input} --out {output:q} {{ echo; }} {threads}"') == ["input"]
    assert unquoted_placeholders('"cmd {params.x:q} > {log}"') == ["log"]


def test_every_shell_placeholder_is_quoted():
    found = {}
    for path in RULE_FILES:
        for line, command in shell_commands(path):
            bad = unquoted_placeholders(command)
            if bad:
                found[f"{path.name}:{line}"] = bad
    assert sum(len(shell_commands(p)) for p in RULE_FILES) >= 10  # the scan sees the rules
    assert not found, f"unquoted placeholders (add :q): {found}"


@pytest.mark.parametrize(
    "override, key",
    [
        ("run=../../escape", "run"),
        ("paths={background: /etc/x.pt}", "paths.background"),
        ("paths={results: 'results/$(touch pwned)'}", "paths.results"),
    ],
)
def test_a_bad_override_stops_before_anything_is_written(tmp_path, override, key):
    proc = snakemake(tmp_path, "-n", "--config", override, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{key}:" in err and "--config" in err, err[-2000:]
    assert "smoke.yaml:" not in err  # the profile is fine: the message blames the override
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], [".snakemake"])
    assert not (tmp_path / "pwned").exists() and not (REPO / "pwned").exists()


def test_a_bad_file_is_named_as_the_source(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text() + "\ntrain:\n  lr: .nan\n")
    proc = snakemake(tmp_path, "-n", configfile=bad, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "bad.yaml" in err and "train.lr" in err, err[-2000:]
