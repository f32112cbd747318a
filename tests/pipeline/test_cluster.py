"""The cluster profile (profiles/slurm/), the resources every rule declares, and envs/vhe.yaml.

Dry runs only, in a temporary working directory. With snakemake-executor-plugin-slurm installed
(the ``test`` extra) the paper run is planned through the slurm executor itself; without it the
profile is still parsed and applied with the executor overridden to local.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tomllib

import pytest
import yaml

from tests.pipeline.helpers import REPO, SMOKE, job_counts, planned_jobs, snakemake_cmd

PROFILE = REPO / "profiles" / "slurm"
PAPER = REPO / "config" / "config.yaml"
HAS_SLURM_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
MODEL_RULES = ("train", "evaluate", "evaluate_structured")


def dry_run(workdir, configfile, *args):
    cmd = [
        *snakemake_cmd(),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--profile",
        str(PROFILE),
        "-n",
        "--configfile",
        str(configfile),
        *args,
    ]
    env = {**os.environ, "VHE_DATA_MIRROR": str(REPO.parent / "shared" / "data" / "omniglot")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


def resources(fields: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in fields.get("resources", "").split(", ") if "=" in item)


def check_resources(out: str) -> list[tuple[str, dict, dict]]:
    """Every planned job but `all` declares mem_mb, runtime and cpus_per_task; model jobs gpu."""
    jobs = [(rule, fields, resources(fields)) for rule, fields in planned_jobs(out) if rule != "all"]
    assert jobs
    for rule, fields, res in jobs:
        for key in ("mem_mb", "runtime", "cpus_per_task"):
            assert int(res.get(key, 0)) > 0, (rule, key, fields)
        if rule in MODEL_RULES:
            assert res.get("gpu") in ("0", "1"), (rule, fields)
    return jobs


def test_profile_keys_are_snakemake_options():
    """Every key of the profile is a Snakemake command-line option (plugin options need the plugin)."""
    from snakemake.cli import get_argument_parser

    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    options = {s for a in get_argument_parser()._actions for s in a.option_strings}
    for key in profile:
        if key.startswith("slurm-") and not HAS_SLURM_PLUGIN:
            continue
        assert f"--{key}" in options, key


def test_profile_resources_applied_with_local_executor(tmp_path):
    """The profile's settings and the rules' resources, whatever executor is installed: the smoke
    DAG, with one model given far more steps, asks for more time for that model only."""
    raw = yaml.safe_load(SMOKE.read_text())
    name = "vhe_deconv"
    steps = raw["train"]["max_steps"]
    raw["models"][name] = {**raw["models"][name], "train": {"max_steps": steps * 1000}}
    cfg = tmp_path / "long.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = dry_run(tmp_path / "wd", cfg, "--executor", "local")
    jobs = check_resources(out)
    train = {f["wildcards"].split("=", 1)[1]: int(r["runtime"]) for rule, f, r in jobs if rule == "train"}
    mine = {m for m in train if m == name or m.startswith(f"{name}_seed")}  # its replicates train as long
    assert min(train[m] for m in mine) > max(v for m, v in train.items() if m not in mine), train
    assert {r["gpu"] for rule, f, r in jobs if rule in MODEL_RULES} == {"0"}  # smoke: device cpu


@pytest.mark.skipif(
    not HAS_SLURM_PLUGIN,
    reason="snakemake-executor-plugin-slurm not installed "
    "(pip install -e '.[cluster]'); the profile is still "
    "checked with the local executor above",
)
def test_slurm_profile_plans_the_paper_run(tmp_path):
    """`snakemake --profile profiles/slurm -n` plans the paper run through the slurm executor;
    --config device=cuda makes every model job ask for one GPU."""
    from experiments.config import load_config
    from pipeline import outputs as OUT

    cfg = load_config(PAPER)
    out = dry_run(tmp_path, PAPER, "--config", "device=cuda")
    counts = job_counts(out)
    assert counts.get("train") == len(OUT.models(cfg)), counts
    assert counts.get("evaluate") == len(OUT.class_models(cfg)), counts
    assert counts.get("evaluate_structured", 0) == len(OUT.structured_models(cfg)), counts
    assert counts.get("paper_figures") == 1 and counts.get("all") == 1, counts
    jobs = check_resources(out)
    assert {r["gpu"] for rule, f, r in jobs if rule in MODEL_RULES} == {"1"}


def test_conda_env_matches_pyproject():
    """envs/vhe.yaml (the rules' conda: directive) lists the project's dependencies."""
    env = yaml.safe_load((REPO / "envs" / "vhe.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    name = lambda spec: re.split(r"[<>=!~ ]", spec, maxsplit=1)[0].lower()  # noqa: E731
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {name(s) for s in pip} == {name(s) for s in deps}
    pinned = {name(s): s for s in pip}
    makefile = (REPO / "Makefile").read_text()
    for pkg in ("torch", "torchvision"):  # the Makefile's pair
        assert f'"{pinned[pkg]}"' in makefile, pinned[pkg]
