"""The single trainer used by every model of the suite.

    Trainer(cfg, out_dir).fit()   # cfg: a per-model config (experiments.config.model_config)

Per step: one batch of episodes from the experiment's training loader, the objective's bound
``model.score(inputs, sizes, x=target, kl_factor=<annealing>, rescale=objective.rescale)``,
Adam on ``-bound``, global gradient clipping, then the learning-rate schedule. Every
``val_every`` steps (and at the last step) the bound (kl_factor 1) on ``val_batches`` fixed
validation batches, built once from the validation loader (fixed seed) and scored under a
fixed RNG that never touches the training RNG; the best one is kept as ``best.pt``; after
``patience`` validations without improvement training stops early.

Learning curve (``train.one_shot_curve``): every ``every`` steps (and at the last step) the
one-shot accuracy on fixed within-alphabet runs built from the *validation* characters
(``vhe.data.runs.within_alphabet_runs``, seeded), scored with ``vhe.evaluate.classify`` (its
``method`` and ``n_samples``) under a forked RNG, so the curve never changes training. It goes to
history.csv (``val_acc``) and W&B; best.pt is still chosen by the validation bound.

Output folder:
    last.pt            resume point (model, optimiser, scheduler, train loader state, torch/
                       cuda/numpy/python RNG states, step, best-so-far, history), written
                       atomically every ``checkpoint_every`` steps and at the end; training
                       resumes from it automatically (bit-identical to an uninterrupted run;
                       a longer max_steps under the cosine schedule starts afresh, see _fingerprint).
    best.pt            {"model": state_dict, "step", "val_bound", "val_kl", "config"}
    config.json        the resolved config used
    provenance.json    git commit, torch/python versions, device, hostname, date, seed, command
    history.csv        step, loss, bound, kl_<latent>, lr, kl_factor, grad_norm, images_per_s,
                       data_share, time_s (cumulative training-step time, all sessions), val_bound,
                       val_kl_<latent>, val_acc (means over ``log_every`` steps)
    train_summary.json final/best validation bound (nats per image), validation KL per latent,
                       steps, wall time, images/s, data-loading share of step time, status
    samples.png        latest sample grid (every ``sample_every`` steps; also logged to W&B)

W&B (``wandb.mode``; offline by default, never needs an account): one run per model named
``<run>/<model>`` in ``<paths.results>/wandb/`` (``wandb sync`` uploads later) with the history
rows, KL per latent and the sample grids; resumed sessions continue the same W&B run.

A non-finite loss or gradient stops training with :class:`TrainingDiverged` naming the step
and the last good checkpoint, which is never overwritten by a non-finite state.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io
import json
import logging
import math
import os
import random
import time
from pathlib import Path

from vhe.files import atomic_path, atomic_write_text, write_json

import numpy as np
import torch

from .artifacts import provenance
from .tracking import enabled as tracking_enabled
from .checkpoints import CheckpointFormatError, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .common import Experiment, model_section, resolve_device
from .precision import resolve_amp_cpu
from .sections import Train
from .config import dump_json_if_changed, load_config

__all__ = ["Trainer", "TrainingDiverged", "train", "lr_lambda"]

log = logging.getLogger("experiments.trainer")
class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/inf; the message names the step and the last good checkpoint."""


# ------------------------------------------------------------------------ helpers
def lr_lambda(train_cfg):
    """Multiplier of the base learning rate after ``step`` optimiser steps."""
    tr = Train.of(train_cfg)
    kind = tr.lr_schedule
    max_steps = max(1, int(tr.max_steps))
    if kind == "constant":
        return lambda step: 1.0
    if kind == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, max_steps) / max_steps))
    if kind == "step":
        size, gamma = int(tr.lr_step_size), float(tr.lr_gamma)
        return lambda step: gamma ** (step // size)
    raise ValueError(f"train.lr_schedule: unknown schedule {kind!r} (constant | cosine | step)")


def _fingerprint(cfg: dict) -> str:
    """Hash of everything that must match for a checkpoint to be resumable.

    Excludes what may change between sessions: max_steps (extend a run) unless the learning-rate
    schedule depends on it (``cosine``: a longer run has another schedule from step 1, so a
    finished short run is not a prefix of it), logging/sampling cadence, W&B, evaluation, other
    models and the device.
    """
    c = copy.deepcopy(cfg)
    for key in ("evaluation", "wandb", "models", "device"):
        c.pop(key, None)
    tr = c.get("model", {}).get("train", {})
    volatile = ["sample_every", "log_every", "num_threads", "checkpoint_every", "one_shot_curve"]
    if tr["lr_schedule"] != "cosine":
        volatile.append("max_steps")
    for key in volatile:
        tr.pop(key, None)
    c.get("paths", {}).pop("results", None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def _finite_params(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def image_grid(rows: list[torch.Tensor], pad: int = 1) -> np.ndarray:
    """Rows of images (n_i, 1, H, W) in [0, 1], ink = 1 -> uint8 (H', W') grid, black ink on white
    (grey padding; a short row is padded with grey cells). ``torchvision.utils.make_grid`` lays it out."""
    from torchvision.utils import make_grid

    n_cols = max(r.shape[0] for r in rows)
    cells = []
    for r in rows:
        r = r.detach().float().cpu().clamp(0, 1)
        cells.append(torch.cat([1.0 - r, torch.full((n_cols - r.shape[0], *r.shape[1:]), 0.5)]))
    grid = make_grid(torch.cat(cells), nrow=n_cols, padding=pad, pad_value=128 / 255)[0]
    return (grid * 255).round().to(torch.uint8).numpy()


# ------------------------------------------------------------------------ trainer
class Trainer:
    """Train one model of the suite (see the module docstring).

    Args:
        cfg: per-model config (dict or path), with a ``model`` section.
        out_dir: checkpoint folder (results/<run>/checkpoints/<model>).
        experiment: a prebuilt :class:`Experiment` (default: ``build_experiment(cfg, device)``).
        device: overrides ``cfg["device"]``.
        max_steps: overrides ``model.train.max_steps``.
        num_threads: overrides ``model.train.num_threads``.
        wandb_mode: overrides ``wandb.mode``.
    """

    def __init__(self, cfg, out_dir, experiment: Experiment | None = None, device=None, max_steps: int | None = None,
                 num_threads: int | None = None, wandb_mode: str | None = None):
        cfg = load_config(cfg)
        m = model_section(cfg)
        if max_steps is not None:
            m["train"]["max_steps"] = int(max_steps)
        if num_threads is not None:
            m["train"]["num_threads"] = int(num_threads)
        if wandb_mode is not None:
            cfg["wandb"]["mode"] = wandb_mode
        if device is not None:
            cfg["device"] = str(device)
        cfg = load_config(cfg)  # re-validate the overrides
        self.cfg, self.m, self.tr = cfg, cfg["model"], Train.of(cfg["model"]["train"])
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(cfg["device"])
        if self.tr.num_threads:
            torch.set_num_threads(int(self.tr.num_threads))
        self.seed = int(cfg["seed"])
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)

        if experiment is None:
            from .registry import build_experiment

            experiment = build_experiment(cfg, self.device)
        self.exp = experiment
        self.model = experiment.model.to(self.device)
        self.objective = experiment.objective
        self.kl_latents = list(experiment.kl_latents)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=float(self.tr.lr))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.tr))
        self.use_amp = bool(self.tr.amp) and self.device.type == "cuda"
        self.use_amp_cpu = self.device.type == "cpu" and resolve_amp_cpu(self.tr.amp_cpu)

        self.step = 0
        self.best_val = -math.inf
        self.best_step = None
        self.bad_validations = 0
        self.status = "running"
        self.history: list[dict] = []
        self.elapsed = 0.0  # training wall time of earlier sessions
        self.wandb_id = None
        self.last_val: dict | None = None
        self.best_val_kl: dict | None = None
        self.images_seen = 0
        self.step_time = 0.0  # sum over steps (all sessions)
        self.data_time = 0.0
        self.interrupt_requested = False
        self._window = self._empty_window()  # training stats since the last history row
        self.fingerprint = _fingerprint(cfg)
        self.paths = {k: self.out / f for k, f in [("last", "last.pt"), ("best", "best.pt"), ("config", "config.json"),
                                                   ("provenance", "provenance.json"), ("history", "history.csv"),
                                                   ("summary", "train_summary.json"), ("samples", "samples.png")]}
        self.resumed_from = self._maybe_resume()
        self._val_batches = None
        self._curve_runs = None
        self._wandb = None

    # ------------------------------------------------------------------ state
    def _checkpoint_state(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_loader": self.exp.train_loader.state_dict(),
            "rng": rng_state(self.device),
            "best_val": self.best_val,
            "best_step": self.best_step,
            "best_val_kl": self.best_val_kl,
            "last_val": self.last_val,
            "bad_validations": self.bad_validations,
            "status": self.status,
            "history": self.history,
            "elapsed": self.elapsed + (time.perf_counter() - self._session_start if hasattr(self, "_session_start") else 0.0),
            "images_seen": self.images_seen,
            "step_time": self.step_time,
            "data_time": self.data_time,
            "wandb_id": self.wandb_id,
            "window": self._window,
            "config": self.cfg,
        }

    def _maybe_resume(self) -> int | None:
        path = self.paths["last"]
        if not path.is_file():
            return None
        try:
            ckpt = read_checkpoint(path)
        except CheckpointFormatError:
            raise  # an older format: say how to convert it rather than throw the run away
        except Exception as e:  # noqa: BLE001 - unreadable checkpoint: keep it aside, start over
            bad = path.with_name(f"last.corrupt-{int(time.time())}.pt")
            os.replace(path, bad)
            log.warning("could not read %s (%s: %s); moved it to %s and starting from scratch",
                        path, type(e).__name__, e, bad)
            return None
        if ckpt.get("fingerprint") != self.fingerprint:
            stale = path.with_name(f"last.stale-{int(time.time())}.pt")
            os.replace(path, stale)
            log.warning("%s was written for a different configuration; moved it to %s and starting from scratch",
                        path, stale)
            return None
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.exp.train_loader.load_state_dict(ckpt["train_loader"])
        set_rng_state(ckpt["rng"], self.device)
        for key in ("step", "best_val", "best_step", "best_val_kl", "last_val", "bad_validations", "status", "history",
                    "elapsed", "images_seen", "step_time", "data_time", "wandb_id"):
            setattr(self, key, ckpt[key])
        self._window = ckpt.get("window") or self._empty_window()
        if self.status in ("completed",) and self.step < self.tr.max_steps:
            self.status = "running"  # max_steps was raised: continue
        log.info("resumed from %s at step %d", path, self.step)
        return self.step

    def save_last(self) -> None:
        if not _finite_params(self.model):
            raise TrainingDiverged(f"parameters are not finite at step {self.step}; not overwriting "
                                   f"{self.paths['last']}")
        save_checkpoint(self._checkpoint_state(), self.paths["last"])
        self._last_saved_step = self.step

    def _save_best(self, val: dict) -> None:
        save_checkpoint({"model": self.model.state_dict(), "step": self.step, "val_bound": val["bound"],
                         "val_kl": val["kl"], "config": self.cfg}, self.paths["best"])

    # ------------------------------------------------------------------ validation
    def _rng_fork(self):
        devices = [self.device] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices)

    def _autocast(self, training: bool = False):
        """bf16 autocast: on CUDA when ``amp`` (every forward pass); on the CPU when ``amp_cpu``,
        training steps only (the validation bound and the one-shot curve stay fp32)."""
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if training and self.use_amp_cpu:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def val_batches(self) -> list:
        """The fixed validation batches (same episodes every validation and after resuming)."""
        if self._val_batches is None:
            loader, n = self.exp.val_loader, int(self.tr.val_batches)
            batches = []
            while len(batches) < n:
                before = len(batches)
                for b in loader:
                    batches.append(b)
                    if len(batches) == n:
                        break
                if len(batches) == before:
                    raise ValueError("the validation loader yields no batches")
            self._val_batches = batches
        return self._val_batches

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean bound (nats per image, kl_factor 1) and mean KL per latent on the fixed validation batches."""
        was_training = self.model.training
        self.model.eval()
        total, count, kl_tot = 0.0, 0, {}
        try:
            with self._rng_fork():
                torch.manual_seed(self.seed + 7919)
                for b in self.val_batches():
                    with self._autocast():
                        bound, kl = self.model.score(b.inputs, b.sizes, x=b.target, kl_factor=1.0,
                                                     rescale=self.objective.rescale, return_kl=True, reduction="sum")
                    total += float(bound)
                    count += len(b.target)
                    for k, v in kl.items():
                        kl_tot[k] = kl_tot.get(k, 0.0) + float(v)
        finally:
            self.model.train(was_training)
        return {"bound": total / count, "kl": {k: v / count for k, v in kl_tot.items()}}

    def curve_runs(self) -> list:
        """The fixed one-shot runs of the learning curve ([] when the model or data has none)."""
        if self._curve_runs is None:
            cc = self.tr.one_shot_curve
            self._curve_runs = []
            if cc["every"] and self.exp.val_set is not None and "c" in self.model.order:
                from vhe.data.runs import within_alphabet_runs

                try:
                    self._curve_runs = within_alphabet_runs(self.exp.val_set, n_runs=cc["n_runs"], n_way=cc["n_way"],
                                                            seed=self.seed + 17)
                except ValueError as e:  # e.g. no validation alphabet has n_way characters
                    log.warning("no learning curve for %s: %s", self.m["name"], e)
        return self._curve_runs

    @torch.no_grad()
    def one_shot_accuracy(self) -> float | None:
        """Accuracy (fraction) on :meth:`curve_runs` with the curve's estimator; None without runs."""
        from vhe.evaluate import classify

        runs = self.curve_runs()
        if not runs:
            return None
        cc = self.tr.one_shot_curve
        correct = total = 0
        with self._rng_fork():
            torch.manual_seed(self.seed + 31337)
            for r in runs:
                support = r.support.to(self.device, torch.float32).unsqueeze(1)
                query = r.query.to(self.device, torch.float32)
                with self._autocast():
                    pred, _ = classify(self.model, support, query, n_samples=cc["n_samples"], method=cc["method"])
                correct += int((pred.cpu() == r.answer).sum())
                total += len(r.answer)
        return correct / total

    @torch.no_grad()
    def sample_grid(self, n_episodes: int = 6, n_samples: int = 6) -> np.ndarray:
        """Rows: (support set of the conditioned latents | samples) for a few validation episodes."""
        b = self.val_batches()[0]
        n = min(n_episodes, len(b.target))
        latents = self.exp.sample_latents
        if latents is None:
            latents = [k for k in self.model.order if k != "z"]
        with self._rng_fork():
            torch.manual_seed(self.seed + 104729)
            if latents:
                inputs = {k: b.inputs[k][:n].repeat_interleave(n_samples, dim=0) for k in latents}
                x = self.model.sample(inputs=inputs)
            else:
                x = self.model.sample(batch_size=n * n_samples)
        x = x.view(n, n_samples, *x.shape[1:])
        rows = []
        for i in range(n):
            support = [b.inputs[k][i] for k in latents[:1]]
            rows.append(torch.cat(support + [torch.full_like(x[i][:1], 0.5), x[i].float()]) if support else x[i])
        return image_grid(rows)

    # ------------------------------------------------------------------ logging
    def _history_fields(self) -> list[str]:
        kl = [f"kl_{k}" for k in self.kl_latents]
        vkl = [f"val_kl_{k}" for k in self.kl_latents]
        return ["step", "loss", "bound", *kl, "lr", "kl_factor", "grad_norm", "images_per_s", "data_share",
                "time_s", "val_bound", *vkl, "val_acc"]

    def _rewrite_history(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self._history_fields(), extrasaction="ignore")
        w.writeheader()
        for row in self.history:
            w.writerow(row)
        atomic_write_text(buf.getvalue(), self.paths["history"])

    def _append_history(self, row: dict) -> None:
        self.history.append(row)
        with open(self.paths["history"], "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._history_fields(), extrasaction="ignore").writerow(row)

    def _init_wandb(self):
        from .tracking import new_run_id, open_run

        if not tracking_enabled(self.cfg):
            return None
        if self.wandb_id is None:
            self.wandb_id = new_run_id()
        return open_run(self.cfg, self.m["name"], job_type="train", run_id=self.wandb_id, config=self.cfg)

    def _wandb_log(self, data: dict) -> None:
        if self._wandb is not None:
            try:
                self._wandb.log(data, step=self.step)
            except Exception as e:  # noqa: BLE001
                log.warning("W&B log failed (%s); disabling W&B", e)
                self._wandb = None

    def _samples(self) -> None:
        try:
            grid = self.sample_grid()
        except Exception as e:  # noqa: BLE001 - a failing sampler must not stop training
            log.warning("sampling failed at step %d: %s: %s", self.step, type(e).__name__, e)
            return
        try:
            from PIL import Image

            with atomic_path(self.paths["samples"]) as tmp:
                Image.fromarray(grid).save(tmp)
        except Exception as e:  # noqa: BLE001
            log.warning("could not save %s: %s", self.paths["samples"], e)
        if self._wandb is not None:
            import wandb

            self._wandb_log({"samples": wandb.Image(grid, caption="left: support set | right: samples")})

    # ------------------------------------------------------------------ training
    def kl_factor(self, step: int) -> float:
        n = int(self.tr.kl_anneal_steps or 0)
        return 1.0 if n <= 0 else min(1.0, step / n)

    def _diverged(self, what: str) -> TrainingDiverged:
        last = self.paths["last"]
        if last.is_file():
            good = f"the last good checkpoint is {last} (step {getattr(self, '_last_saved_step', None) or self._last_step_on_disk()})"
        else:
            good = "no checkpoint was written yet"
        return TrainingDiverged(
            f"{what} at step {self.step + 1} of model {self.m['name']!r}; training stopped and nothing was saved "
            f"for this step: {good}. Lower train.lr, tighten train.grad_clip or add train.kl_anneal_steps, then "
            f"rerun (it resumes from last.pt).")

    def _last_step_on_disk(self):
        try:
            return read_checkpoint(self.paths["last"])["step"]
        except Exception:  # noqa: BLE001
            return "unknown"

    def _train_step(self, batch) -> dict:
        kl_factor = self.kl_factor(self.step)
        with self._autocast(training=True):
            bound, kl = self.model.score(batch.inputs, batch.sizes, x=batch.target, kl_factor=kl_factor,
                                         rescale=self.objective.rescale, return_kl=True)
        loss = -bound
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise self._diverged(f"non-finite loss ({loss_value})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.tr.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip else float("inf"))
        grad_norm = float(grad_norm)
        if not math.isfinite(grad_norm):
            raise self._diverged(f"non-finite gradient norm ({grad_norm})")
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss_value, "bound": -loss_value, "kl": {k: float(v) for k, v in kl.items()},
                "lr": lr, "kl_factor": kl_factor, "grad_norm": grad_norm}

    def _next_batch(self):
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.exp.train_loader)
            try:
                return next(self._it)
            except StopIteration:
                raise ValueError("the training loader yields no batches (fewer targets than batch_size?)") from None

    def fit(self, stop_after: int | None = None) -> dict | None:
        """Train until ``max_steps`` or early stopping; returns the summary.

        ``stop_after`` (tests): return right after that step as if the process were killed
        (only the regular checkpoints are on disk; returns None).
        """
        from tqdm.auto import tqdm

        max_steps = int(self.tr.max_steps)
        self._session_start = time.perf_counter()
        dump_json_if_changed(self.cfg, self.paths["config"])
        prov = provenance(self.cfg, self.device)
        prov["resumed_from_step"] = self.resumed_from
        dump_json_if_changed(prov, self.paths["provenance"])
        self._rewrite_history()
        self.model.train()
        if self.status in ("completed", "early_stopped") or self.step >= max_steps:
            if self.status == "running":
                self.status = "completed"
            log.info("%s: already %s at step %d", self.m["name"], self.status, self.step)
            return self._finish()
        self._wandb = self._init_wandb()
        self._it = iter(self.exp.train_loader)
        val_every, ckpt_every = int(self.tr.val_every), int(self.tr.checkpoint_every)
        log_every, sample_every = int(self.tr.log_every), int(self.tr.sample_every or 0)
        win = self._window
        bar = tqdm(total=max_steps, initial=self.step, desc=self.m["name"], unit="step", dynamic_ncols=True,
                   disable=None, mininterval=1.0)
        try:
            while self.step < max_steps:
                t0 = time.perf_counter()
                batch = self._next_batch()
                t1 = time.perf_counter()
                stats = self._train_step(batch)
                self.step += 1
                dt, dd = time.perf_counter() - t0, t1 - t0
                n = len(batch.target)
                self.images_seen += n
                self.step_time += dt
                self.data_time += dd
                win["stats"].append(stats)
                win["images"] += n
                win["time"] += dt
                win["data_time"] += dd
                bar.update(1)
                if self.step % 10 == 0 or self.step == 1:
                    post = {"loss": f"{stats['loss']:.1f}"}
                    post.update({f"KL_{k}": f"{stats['kl'][k]:.1f}" for k in self.kl_latents if k in stats["kl"]})
                    post["img/s"] = f"{win['images'] / max(win['time'], 1e-9):.0f}"
                    bar.set_postfix(post, refresh=False)

                row = None
                if self.step % log_every == 0 or self.step == max_steps:
                    row = self._window_row(win)
                    win = self._window = self._empty_window()
                if self.step % val_every == 0 or self.step == max_steps:
                    row = row or {"step": self.step}
                    self._after_validation(self.validate(), row, bar)
                curve_every = int(self.tr.one_shot_curve["every"])
                if curve_every and (self.step % curve_every == 0 or self.step == max_steps):
                    acc = self.one_shot_accuracy()
                    if acc is not None:
                        row = row or {"step": self.step}
                        row["val_acc"] = acc
                        msg = f"{self.m['name']} step {self.step}: one-shot accuracy on validation runs {100 * acc:.1f}%"
                        bar.write(msg) if not bar.disable else log.info(msg)
                if row is not None:
                    row.setdefault("time_s", self.step_time)
                    self._append_history(row)
                    self._wandb_log({k: v for k, v in row.items() if v not in (None, "") and k != "step"})
                if sample_every and self.step % sample_every == 0:
                    self._samples()
                if self.status == "running" and self.step >= max_steps:
                    self.status = "completed"
                if self.step % ckpt_every == 0 or self.status != "running":
                    self.save_last()
                if self.status != "running":
                    break
                if stop_after is not None and self.step >= stop_after:
                    return None
                if self.interrupt_requested:
                    self.save_last()
                    raise KeyboardInterrupt(f"interrupted at step {self.step}; state saved to {self.paths['last']}")
        finally:
            bar.close()
        return self._finish()

    @staticmethod
    def _empty_window() -> dict:
        return {"stats": [], "images": 0, "time": 0.0, "data_time": 0.0}

    def _window_row(self, win: dict) -> dict:
        window, n_images, t, t_data = win["stats"], win["images"], win["time"], win["data_time"]
        mean = lambda key: sum(s[key] for s in window) / len(window)  # noqa: E731
        row = {"step": self.step, "loss": mean("loss"), "bound": mean("bound"), "lr": window[-1]["lr"],
               "kl_factor": window[-1]["kl_factor"], "grad_norm": mean("grad_norm"),
               "images_per_s": n_images / max(t, 1e-9), "data_share": t_data / max(t, 1e-9)}
        for k in self.kl_latents:
            row[f"kl_{k}"] = sum(s["kl"].get(k, float("nan")) for s in window) / len(window)
        return row

    def _after_validation(self, val: dict, row: dict, bar) -> None:
        self.last_val = {"step": self.step, **val}
        row["val_bound"] = val["bound"]
        for k in self.kl_latents:
            row[f"val_kl_{k}"] = val["kl"].get(k)
        improved = val["bound"] > self.best_val
        if improved:
            self.best_val, self.best_step, self.best_val_kl = val["bound"], self.step, val["kl"]
            self.bad_validations = 0
            self._save_best(val)
        else:
            self.bad_validations += 1
        kl = ", ".join(f"KL_{k} {v:.2f}" for k, v in val["kl"].items())
        msg = (f"{self.m['name']} step {self.step}: val bound {val['bound']:.3f} nats/image ({kl})"
               f"{' *best*' if improved else f' (best {self.best_val:.3f} at step {self.best_step})'}")
        bar.write(msg) if bar is not None and not bar.disable else log.info(msg)
        patience = self.tr.patience
        if patience and self.bad_validations >= patience:
            self.status = "early_stopped"
            msg = (f"{self.m['name']}: early stopping at step {self.step} ({self.bad_validations} validations "
                   f"without improvement; best {self.best_val:.3f} at step {self.best_step})")
            bar.write(msg) if bar is not None and not bar.disable else log.info(msg)

    def _finish(self) -> dict:
        if not self.paths["best"].is_file():  # e.g. resumed a finished run whose best.pt was deleted
            val = self.validate()
            self.last_val = {"step": self.step, **val}
            self.best_val, self.best_step, self.best_val_kl = val["bound"], self.step, val["kl"]
            self._save_best(val)
        elapsed = self.elapsed + (time.perf_counter() - self._session_start)
        last = self.last_val or {}
        summary = {
            "model": self.m["name"],
            "run": self.cfg["run"],
            "experiment": self.m["experiment"],
            "objective": self.m.get("objective"),
            "decoder": self.m.get("decoder"),
            "status": self.status,
            "steps": self.step,
            "max_steps": int(self.tr.max_steps),
            "best_step": self.best_step,
            "best_val_bound": self.best_val,
            "best_val_kl": self.best_val_kl,
            "final_val_bound": last.get("bound"),
            "final_val_kl": last.get("kl"),
            "units": "val bounds: lower bound on log p(x) in nats per image (higher is better); KL in nats",
            "wall_time_s": elapsed,
            "train_time_s": self.step_time,
            "images_seen": self.images_seen,
            "images_per_s": self.images_seen / self.step_time if self.step_time else None,
            "ms_per_step": 1000 * self.step_time / self.step if self.step else None,
            "data_share": self.data_time / self.step_time if self.step_time else None,
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device),
            "bf16_autocast": self.use_amp or self.use_amp_cpu,
            "num_threads": torch.get_num_threads(),
            "info": self.exp.info,
            "wandb_id": self.wandb_id if tracking_enabled(self.cfg) else None,
        }
        write_json(summary, self.paths["summary"])
        if self._wandb is not None:
            try:
                for k, v in summary.items():
                    if isinstance(v, (int, float, str)) or v is None:
                        self._wandb.summary[k] = v
                self._wandb.finish()
            except Exception as e:  # noqa: BLE001
                log.warning("W&B finish failed: %s", e)
            self._wandb = None
        return summary

    def close_wandb(self) -> None:
        if self._wandb is not None:
            try:
                self._wandb.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
            self._wandb = None


def train(cfg, out_dir, **kwargs) -> dict:
    """Build a :class:`Trainer` and run it to the end; returns the summary."""
    trainer = Trainer(cfg, out_dir, **kwargs)
    try:
        return trainer.fit()
    finally:
        trainer.close_wandb()
