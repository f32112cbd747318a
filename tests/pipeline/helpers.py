"""Helpers of the pipeline tests: Snakemake in a scratch working directory, dry-run parsing,
a placeholder finished smoke run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = [
    "REPO",
    "SNAKEFILE",
    "SMOKE",
    "snakemake_cmd",
    "snakemake",
    "job_counts",
    "planned_jobs",
    "smoke_cfg",
    "needs_smoke",
    "pretend_finished",
]

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
SMOKE = REPO / "config" / "smoke.yaml"


def snakemake_cmd():
    exe = Path(sys.executable).parent / "snakemake"
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-m", "snakemake"]


def snakemake(workdir, *args, configfile=SMOKE, check=True):
    cmd = [*snakemake_cmd(), "-s", str(SNAKEFILE), "-d", str(workdir), "--configfile", str(configfile), *args]
    env = {**os.environ, "VHE_DATA_MIRROR": str(REPO.parent / "shared" / "data" / "omniglot")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def job_counts(output: str) -> dict[str, int]:
    """{rule: count} from the "Job stats" table of a dry run."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_table, counts = True, {}
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m:
                if m.group(1) == "total":
                    in_table = False
                else:
                    counts[m.group(1)] = int(m.group(2))
    return counts


def planned_jobs(output: str) -> list[tuple[str, dict]]:
    """[(rule, {field: value})] for every job a dry run prints."""
    jobs = []
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip()) if not line.startswith("    ") else None
        if m:
            jobs.append((m.group(1), {}))
        elif jobs and line.startswith("    ") and ": " in line:
            key, _, value = line.strip().partition(": ")
            jobs[-1][1][key] = value
    return jobs


def smoke_cfg():
    from experiments.config import load_config

    return load_config(SMOKE)


needs_smoke = pytest.mark.skipif(not SMOKE.is_file(), reason="config/smoke.yaml not written yet")


def pretend_finished(workdir) -> dict:
    """Make ``workdir`` hold a finished smoke run: the config rules run for real (Snakemake records
    their parameters), every other expected output is a placeholder, then --touch records them
    all as up to date. Returns the resolved smoke config."""
    from pipeline import outputs as OUT

    cfg = smoke_cfg()
    files = OUT.expected_outputs(cfg) + [OUT.raw_file(n) for n in OUT.raw_files()]
    configs = [OUT.config_file(cfg, m) for m in OUT.models(cfg)] + [OUT.evaluation_config_file(cfg)]
    for f in files:
        p = Path(workdir) / f
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() and f not in configs:
            p.write_text("x")
    snakemake(workdir, "--cores", "1", *configs)
    snakemake(workdir, "--touch", "--cores", "1")
    return cfg
