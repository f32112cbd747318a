"""A dry run changes nothing; settings that do not change results (device, W&B) rerun nothing; the
workflow parses and plans without a shared filesystem (Snakemake's fs storage plugin)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.pipeline.helpers import job_counts, needs_smoke, pretend_finished, snakemake


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of every file under ``root`` outside .snakemake/."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".snakemake"]
        for name in filenames:
            st = (Path(dirpath) / name).stat()
            out[str(Path(dirpath, name).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@needs_smoke
@pytest.mark.slow  # three Snakemake runs on a placeholder run: ~1-2 min
def test_run_settings_rerun_nothing_and_a_dry_run_writes_nothing(tmp_path):
    pretend_finished(tmp_path)
    before = snapshot(tmp_path)
    assert any(p.endswith("configs/vhe_deconv.json") for p in before)
    for override in ("wandb={mode: disabled}", "wandb={mode: online, project: elsewhere}", "device=cpu"):
        proc = snakemake(tmp_path, "-n", "--config", override)
        out = proc.stdout + proc.stderr
        assert "Nothing to be done" in out and not job_counts(out), (override, out[-2000:])
    assert snapshot(tmp_path) == before


@needs_smoke
def test_a_dry_run_of_a_new_run_writes_nothing(tmp_path):
    snakemake(tmp_path, "-n")
    assert snapshot(tmp_path) == {}


@needs_smoke
@pytest.mark.skipif(
    importlib.util.find_spec("snakemake_storage_plugin_fs") is None,
    reason="snakemake-storage-plugin-fs is not installed (the test extra has it)",
)
def test_plans_without_a_shared_filesystem(tmp_path):
    work, store = tmp_path / "work", tmp_path / "store"
    work.mkdir()
    store.mkdir()
    proc = snakemake(
        work,
        "-n",
        "--shared-fs-usage",
        "none",
        "--default-storage-provider",
        "fs",
        "--default-storage-prefix",
        str(store),
        "--local-storage-prefix",
        str(work / ".local"),
        "--config",
        f"paths={{resume_store: {store}/resume}}",
    )
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("train", 0) >= 1 and counts.get("paper_figures") == 1, counts
    assert snapshot(work) == {} and snapshot(store) == {}


@needs_smoke
@pytest.mark.slow  # two Snakemake runs on a placeholder run: ~1 min
def test_adding_seeds_to_a_finished_run_plans_only_the_new_replicates(tmp_path):
    import re

    pretend_finished(tmp_path)  # the smoke run, with its replicates of seed 1
    proc = snakemake(tmp_path, "-n", "--config", "replicates={models: [vhe_deconv, ns_deconv], seeds: [1, 2]}")
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    assert counts == {"model_config": 2, "train": 2, "evaluate": 2, "paper_figures": 1, "all": 1}, counts
    assert set(re.findall(r"wildcards: (?:model|class_model)=(\w+)", proc.stdout)) == {
        "vhe_deconv_seed2",
        "ns_deconv_seed2",
    }
