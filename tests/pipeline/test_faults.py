"""Every stage fault-tested (issue 16): data preparation, evaluation, tables and figures are
SIGKILLed part-way and rerun, and writes hit a full disk.

Faults are injected at chosen writes (tests/pipeline/faults.py), never on a timer:

- a stage killed while writing an output, or right after one of several outputs, leaves each
  output either absent or its previous complete version (never a partial file under the
  output's name), and the rerun gives the same files as an uninterrupted run: byte for byte,
  except the metrics JSON's ``provenance.date`` and ``eval_seconds`` and the random table ids
  pandas puts in summary.html (PDFs are compared with SOURCE_DATE_EPOCH set);
- under Snakemake, a killed job's outputs are deleted and the next run redoes it; when
  Snakemake itself is killed with the job, the job's outputs - even those it had completed -
  are marked incomplete: the next run refuses them until ``--rerun-incomplete`` redoes the job;
- a disk that fills up mid-write (ENOSPC, early or reported only at fsync) leaves the previous
  file intact and no temporary file behind: the JSON writer, checkpoints, figures.

Smoke scale: the data rules on the first 20 characters of the shared mirror, evaluation on a
tiny synthetic set with an untrained model, the tables and figures on the synthetic run of
tests/pipeline/synthetic.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.pipeline import faults
from tests.pipeline.faults import REPO

MIRROR = Path(os.environ.get("VHE_DATA_MIRROR") or REPO.parent / "shared" / "data" / "omniglot")
needs_mirror = pytest.mark.skipif(not (MIRROR / "train_small.npz").is_file(), reason=f"no data mirror at {MIRROR}")
SMOKE = REPO / "config" / "smoke.yaml"


# =========================================================================== a full disk
def _previous(path: Path, content: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return content


def _errnos(exc) -> set:
    seen = set()
    while exc is not None:
        seen.add(getattr(exc, "errno", None))
        exc = exc.__cause__ or exc.__context__
    return seen


def _no_temporaries(folder: Path):
    assert faults.hidden_temporaries(folder) == [], faults.hidden_temporaries(folder)


@pytest.mark.parametrize("budget", [0, 10, 4000])
def test_full_disk_json_keeps_previous(tmp_path, monkeypatch, budget):
    from vhe.files import write_json

    out = tmp_path / "metrics" / "m.json"
    before = _previous(out, b'{"nll_estimate": 90.0}\n')
    big = {"nll_estimate": 91.0, "per_class": list(range(2000))}
    with faults.full_disk(monkeypatch, budget) as disk, pytest.raises(OSError) as err:
        write_json(big, out)
    assert err.value.errno == errno.ENOSPC and disk["failed"] == 1
    assert out.read_bytes() == before
    _no_temporaries(tmp_path)
    write_json(big, out)  # space again: written in full
    assert json.loads(out.read_text()) == big


def test_full_disk_checkpoint_keeps_previous(tmp_path, monkeypatch):
    from experiments.checkpoints import read_checkpoint, save_checkpoint

    out = tmp_path / "checkpoints" / "m" / "last.pt"
    save_checkpoint({"model": {"w": torch.zeros(4)}, "step": 6}, out)
    before = out.read_bytes()
    state = {"model": {"w": torch.ones(20000)}, "step": 12}
    with faults.full_disk(monkeypatch, 5000) as disk, pytest.raises((OSError, RuntimeError)) as err:
        save_checkpoint(state, out)
    # torch's zip writer raises its own RuntimeError on the way out; the ENOSPC is its cause
    assert _errnos(err.value) & {errno.ENOSPC} and disk["written"] == 5000
    assert out.read_bytes() == before and read_checkpoint(out)["step"] == 6
    _no_temporaries(tmp_path)
    save_checkpoint(state, out)
    assert read_checkpoint(out)["step"] == 12


@pytest.mark.parametrize("fails", ["png", "pdf"])
def test_full_disk_figure_keeps_previous(tmp_path, monkeypatch, fails):
    """The disk fills up while the PNG is written, or while the PDF is written after the PNG:
    each file is its previous or its new complete version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.artifacts import save_figure

    def fig():
        f, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [1, 0])
        return f

    png, pdf = tmp_path / "figures" / "kl_c.png", tmp_path / "figures" / "kl_c.pdf"
    save_figure(fig(), png)  # the complete new versions
    new = {p: p.read_bytes() for p in (png, pdf)}
    before = {png: _previous(png, b"previous png"), pdf: _previous(pdf, b"previous pdf")}
    budget = 100 if fails == "png" else len(new[png]) + 100  # room for the PNG, not for the PDF
    with faults.full_disk(monkeypatch, budget) as disk, pytest.raises(OSError) as err:
        save_figure(fig(), png)
    assert err.value.errno == errno.ENOSPC and disk["failed"] == 1
    assert pdf.read_bytes() == before[pdf]
    assert png.read_bytes() == (before[png] if fails == "png" else new[png])
    _no_temporaries(tmp_path)
    assert plt.get_fignums() == []  # the figure was closed


def test_late_write_error_keeps_previous(tmp_path, monkeypatch):
    """A filesystem that reports the full disk only when the data are flushed (NFS, btrfs):
    atomic_path syncs before the rename, so the error comes before the previous file is replaced."""
    from vhe import files

    out = tmp_path / "tables" / "metrics.csv"
    before = _previous(out, b"model,metric\nvhe,nll\n")

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        files.atomic_write_text("model,metric\nvhe,nll\nns,nll\n", out)
    assert out.read_bytes() == before
    _no_temporaries(tmp_path)


def test_torch_files_are_reproducible(tmp_path):
    """The same object saved twice gives the same bytes (the archive is not named after the
    random temporary file), so prepared data and reruns compare byte for byte."""
    from vhe.files import atomic_torch_save

    obj = {"format": "x", "images": torch.arange(12, dtype=torch.uint8).reshape(3, 4)}
    a = atomic_torch_save(obj, tmp_path / "a.pt").read_bytes()
    b = atomic_torch_save(obj, tmp_path / "b.pt").read_bytes()
    assert a == b
    assert torch.equal(torch.load(tmp_path / "b.pt", weights_only=True)["images"], obj["images"])


# =========================================================================== stages killed
def _run(module, args, env, cwd):
    return faults.run_module(module, args, env, cwd=cwd)


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def _killed(proc, marker) -> Path:
    """The output the process was killed at (the fault fired there, so it is written atomically)."""
    assert proc.returncode == -9, f"expected SIGKILL, got {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert marker.exists()
    return Path(marker.read_text().strip())


def _smoke_config(tmp_path) -> tuple[Path, dict]:
    """config/smoke.yaml with W&B disabled (its offline runs cost seconds per job): (file, resolved)."""
    import yaml

    from experiments.config import load_config

    raw = yaml.safe_load(SMOKE.read_text())
    raw["wandb"] = {**(raw.get("wandb") or {}), "mode": "disabled"}
    path = Path(tmp_path) / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, load_config(path)


# --------------------------------------------------------------------------- data preparation
@needs_mirror
@pytest.mark.slow  # subprocesses and Snakemake: 10-40 s
def test_data_preparation_killed(tmp_path):
    """The data rules' commands killed while writing their output (resources/<run>/*.pt, the
    domain-gap JSON): the previous file is untouched. Under Snakemake, prepare_background's job
    killed mid-write: Snakemake reports it and removes its output; the next plain run redoes
    the job and writes the same bytes as the uninterrupted run."""
    config, cfg = _smoke_config(tmp_path)
    work = tmp_path / "work"
    target = cfg["paths"]["background"]
    out = work / target
    raw = work / "resources" / "raw" / "train_small.npz"  # as fetch_raw leaves it
    raw.parent.mkdir(parents=True)
    shutil.copyfile(MIRROR / raw.name, raw)
    prepare = [
        "prepare-omniglot",
        "--npz",
        "resources/raw/train_small.npz",
        "--out",
        target,
        "--max-characters",
        cfg["data"]["max_characters"],
    ]  # the rule's command
    prepare += ["--center-ink"] if cfg["data"].get("center_ink") else []
    _ok(_run("vhe.data.cli", prepare, faults.base_env(), work))
    reference = out.read_bytes()

    # the commands, a previous version present
    gap = work / cfg["paths"]["results"] / "metrics" / "data_gap.json"
    commands = {
        out: prepare,
        gap: [
            "gap",
            "--npz",
            raw,
            "--quick",
            "--max-characters",
            5,
            "--out",
            gap,
            "--lake-zip",
            MIRROR / "images_background_small1.zip",
            "--lake-zip",
            MIRROR / "images_background_small2.zip",
        ],
    }
    env, marker, _ = faults.fault_env(tmp_path, "vhe.data.cli", n=1, action="kill-mid")
    for path, args in commands.items():
        previous = _previous(path, b"previous complete version of " + path.name.encode())
        assert _killed(_run("vhe.data.cli", args, env, work), marker) == path
        assert path.read_bytes() == previous
        left = faults.hidden_temporaries(path.parent)
        assert len(left) == 1 and left[0].name.startswith(f".{path.name}.")  # the partial write, hidden
        _ok(_run("vhe.data.cli", args, faults.base_env(), work))  # the rerun removes it
        assert faults.hidden_temporaries(path.parent) == []
    assert out.read_bytes() == reference
    gap.unlink()

    # the job under Snakemake, run over a previous output
    env, marker, _ = faults.fault_env(tmp_path, "vhe.data.cli", n=1, action="kill-mid", VHE_DATA_MIRROR=str(MIRROR))
    proc = faults.snakemake(work, [target], config, "--forcerun", "prepare_background", env=env, check=False)
    assert proc.returncode != 0 and marker.exists(), proc.stderr[-3000:]
    assert "Error in rule prepare_background" in proc.stderr, proc.stderr[-3000:]
    assert not out.exists()  # the failed job's output is gone, not taken for done
    proc = faults.snakemake(work, [target], config, env=faults.base_env(VHE_DATA_MIRROR=str(MIRROR)))
    assert "prepare_background" in proc.stderr.split("Job stats")[-1], proc.stderr[-3000:]
    assert out.read_bytes() == reference


# --------------------------------------------------------------------------- evaluation
def _eval_setup(root: Path):
    """A tiny synthetic evaluation set, Lake-format runs and an untrained vhe_deconv checkpoint."""
    from experiments.checkpoints import save_checkpoint
    from experiments.config import load_config, model_config
    from experiments.registry import build_experiment
    from vhe.data.runs import OneShotRun, save_runs

    res = root / "resources"
    res.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)

    def save_set(path, n_chars, n_alphabets, n_per=6):
        protos = (torch.rand(n_chars, 1, 28, 28, generator=g) < 0.15).to(torch.uint8)
        images = protos.repeat_interleave(n_per, dim=0)
        character = torch.arange(n_chars).repeat_interleave(n_per)
        torch.save(
            {
                "format": "vhe.OmniglotSet",
                "version": 1,
                "images": images,
                "character": character,
                "alphabet": character * n_alphabets // n_chars,
                "drawer": torch.arange(n_per).repeat(n_chars),
                "character_names": [f"A{c * n_alphabets // n_chars}/c{c:02d}" for c in range(n_chars)],
                "alphabet_names": [f"A{a}" for a in range(n_alphabets)],
                "source": "synthetic",
            },
            path,
        )

    save_set(res / "background.pt", 6, 1)
    save_set(res / "evaluation.pt", 5, 1)
    runs = [
        OneShotRun(
            support=(torch.rand(4, 1, 28, 28, generator=g) < 0.2).to(torch.uint8),
            query=(torch.rand(4, 1, 28, 28, generator=g) < 0.2).to(torch.uint8),
            answer=torch.randperm(4, generator=g),
            name="run00",
        )
    ]
    save_runs(runs, res / "lake_runs.pt")
    paths = {k: f"resources/{k}.pt" for k in ("background", "evaluation", "lake_runs")}  # relative to root
    paths["results"] = "results"
    nets = {
        "c_dim": 4,
        "z_dim": 2,
        "a_dim": 4,
        "t_dim": 4,
        "hidden": 8,
        "conv_channels": 4,
        "conv_layers": 2,
        "deconv_channels": 4,
        "pixelcnn": {"n_layers": 2, "channels": 4, "kernel_size": 3, "cond_channels": 2},
    }
    raw = {
        "run": "faults",
        "seed": 0,
        "device": "cpu",
        "wandb": {"mode": "disabled"},
        "data": {"val_fraction": 0.34},
        "paths": paths,
        "nets": nets,
        "train": {"batch_size": 4, "k_shot": 2, "max_steps": 1, "num_threads": 1, "patience": None},
        "models": {"vhe_deconv": {"experiment": "class", "objective": "vhe", "decoder": "deconv"}},
        "evaluation": {
            "n_samples": 2,
            "max_classes": 3,
            "classification_samples": 1,
            "lake_runs": True,
            "within_alphabet_runs": 0,
            "estimators": ["conditional"],
            "episodes": {"ways": [2], "shots": [1], "n_episodes": 1},
            "validation_runs": {"n_runs": 0, "n_way": 2},
            "seed": 0,
        },
    }
    cfg = model_config(load_config(raw), "vhe_deconv")
    config = root / "configs" / "vhe_deconv.json"
    config.parent.mkdir()
    config.write_text(json.dumps(cfg))
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the jobs run there (_run's cwd)
        exp = build_experiment(load_config(str(config)), "cpu")
    ckpt = root / "checkpoints" / "vhe_deconv" / "best.pt"
    save_checkpoint({"model": exp.model.state_dict(), "step": 0, "config": cfg}, ckpt)
    return [
        "--config",
        config,
        "--checkpoint",
        ckpt,
        "--out",
        root / "metrics" / "vhe_deconv.json",
        "--figures",
        root / "figures",
        "--device",
        "cpu",
    ]


@pytest.mark.slow  # subprocesses and Snakemake: 10-40 s
def test_evaluation_killed_mid_write(tmp_path):
    """analysis.evaluate killed while writing the metrics JSON (its last write, after the sample
    sheet): the previous metrics stay as they were, or with none there is none; a rerun gives the
    uninterrupted run's files (the JSON without its date and timings)."""
    root = tmp_path / "run"
    args = _eval_setup(root)
    outputs = ["figures/samples_vhe_deconv.png", "figures/samples_vhe_deconv.pdf", "metrics/vhe_deconv.json"]
    env, _, trace = faults.fault_env(tmp_path, "analysis.evaluate", trace=True)
    _ok(_run("analysis.evaluate", args, env, root))
    assert faults.traced(trace) == [str(root / f) for f in outputs]  # all atomic, the metrics last
    reference = faults.snapshot(root, outputs)
    last = len(outputs)

    env, marker, _ = faults.fault_env(tmp_path, "analysis.evaluate", n=last, action="kill-mid")
    assert _killed(_run("analysis.evaluate", args, env, root), marker) == root / outputs[-1]
    assert (root / outputs[-1]).read_bytes() == reference[outputs[-1]]  # previous metrics untouched
    assert faults.same_outputs(faults.snapshot(root, outputs), reference) == []
    assert [p.parent.name for p in faults.hidden_temporaries(root)] == ["metrics"]  # the partial JSON, hidden

    (root / outputs[-1]).unlink()
    assert _killed(_run("analysis.evaluate", args, env, root), marker) == root / outputs[-1]
    assert (root / outputs[0]).exists() and not (root / outputs[-1]).exists()  # sheet, no metrics: not done

    _ok(_run("analysis.evaluate", args, faults.base_env(), root))
    assert faults.same_outputs(faults.snapshot(root, outputs), reference) == []


# --------------------------------------------------------------------------- tables and figures
def _synthetic_smoke_run(work: Path, cfg) -> list[str]:
    """results/smoke/ of a finished smoke run up to the tables: the synthetic metrics, histories
    and sample sheets of tests/pipeline/synthetic.py, placeholders for what paper_figures does not
    read. Returns paper_figures' inputs (every expected output but its own)."""
    from pipeline import outputs as OUT
    from tests.pipeline import synthetic

    replicates = {
        n: synthetic.replicate(e["replicate_of"], e["seed"]) for n, e in cfg["models"].items() if "replicate_of" in e
    }  # the profile's models trained with other seeds
    synthetic.make_run(work, run=cfg["run"], skip=(), replicates=replicates)
    models = synthetic.model_entries()
    for name, entry in models.items():
        metrics = work / OUT.metrics_file(cfg, name)
        if not metrics.exists() and entry["experiment"] in ("vae", "class"):
            metrics.write_text(json.dumps(synthetic.metrics_for(name, entry, nll=112.0, kl_c=None, lake=0.2)))
    ours = set(OUT.paper_figure_outputs(cfg))
    inputs = [f for f in OUT.expected_outputs(cfg) if f not in ours and "/configs/" not in f] + [
        f"resources/raw/{n}"
        for n in (
            "train_small.npz",
            "test_small.npz",
            "images_background_small1.zip",
            "images_background_small2.zip",
            "all_runs.zip",
        )
    ]
    for f in inputs:
        p = work / f
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_text("x")
    return inputs


@pytest.mark.slow  # subprocesses and Snakemake: 10-40 s
def test_tables_and_figures_killed_part_way(tmp_path):
    """paper_figures (16 tables, 8 figures, the summary page) with Snakemake and the job killed
    together after half its outputs were written: those complete-looking outputs are marked
    incomplete (Snakemake without the repository's default profile, which sets rerun-incomplete,
    refuses them); the lock of the killed Snakemake is reported until --unlock; the rerun redoes
    the job and gives the uninterrupted run's files. A partial metrics JSON that a killed
    evaluation left (hidden) is not read."""
    from pipeline import outputs as OUT

    config, cfg = _smoke_config(tmp_path)
    work = tmp_path / "work"
    inputs = _synthetic_smoke_run(work, cfg)
    env = faults.base_env(VHE_DATA_MIRROR=str(MIRROR))
    faults.snakemake(work, inputs, config, "--touch", env=env)  # record the synthetic run as up to date
    run_dir = work / OUT.results_dir(cfg)
    outputs = [str(Path(f).relative_to(OUT.results_dir(cfg))) for f in OUT.paper_figure_outputs(cfg)]
    # what analysis.evaluate killed mid-write leaves beside the metrics (test above)
    (run_dir / "metrics" / ".vhe_pixelcnn.json.k3j2h1.json").write_text('{"model": "vhe_pixelcnn", "nll_est')

    env, _, trace = faults.fault_env(tmp_path, "paper_figures.make", trace=True)
    _ok(_run("paper_figures.make", ["--run-dir", run_dir], env, work))  # the uninterrupted run
    assert sorted(faults.traced(trace)) == sorted(str(run_dir / f) for f in outputs)  # every output atomic
    reference = faults.snapshot(run_dir, outputs)
    for f in outputs:
        (run_dir / f).unlink()

    half = len(outputs) // 2
    target = [OUT.summary_files(cfg)[0]]
    env, marker, _ = faults.fault_env(
        tmp_path, "paper_figures.make", n=half, action="pause-after", VHE_DATA_MIRROR=str(MIRROR)
    )
    faults.kill_group_when(faults.snakemake_cmd(work, target, config), env, marker)
    now = faults.snapshot(run_dir, outputs)
    assert len(now) == half and all(not faults.same_outputs({f: now[f]}, {f: reference[f]}) for f in now)

    env = faults.base_env(VHE_DATA_MIRROR=str(MIRROR))
    proc = faults.snakemake(work, target, config, "-n", "--workflow-profile", "none", env=env, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "IncompleteFilesException" in err, err[-3000:]
    listed = err.split("Incomplete files:")[-1].split()
    assert {str(Path(OUT.results_dir(cfg)) / f) for f in now} <= set(listed), (sorted(now), listed)
    proc = faults.snakemake(work, target, config, env=env, check=False)
    assert proc.returncode != 0 and "LockException" in proc.stderr and "--unlock" in proc.stderr, proc.stderr[-2000:]
    faults.snakemake(work, target, config, "--unlock", env=env)
    proc = faults.snakemake(work, target, config, env=env)  # profiles/default sets rerun-incomplete
    assert "paper_figures" in proc.stderr.split("Job stats")[-1], proc.stderr[-3000:]
    assert faults.same_outputs(faults.snapshot(run_dir, outputs), reference) == []
