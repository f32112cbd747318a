"""The one trainer of the suite: ``Trainer(cfg, out_dir).fit()`` trains one model.

``cfg`` is a per-model config (experiments.config.model_config). Each step: a batch of episodes,
Adam on minus the objective's bound (KL annealed over ``kl_anneal_steps``), gradient clipping,
the learning-rate schedule. Every ``val_every`` steps the bound on fixed validation batches (the
best weights are kept; ``patience`` stops early) and every ``one_shot_curve.every`` steps the
one-shot accuracy on fixed validation runs, both under a forked RNG, so they never change
training. A non-finite loss or gradient raises :class:`TrainingDiverged`.

It writes to ``out_dir``:
    last.pt            resume point: model, optimiser, scheduler, loader and RNG states and the
                       :class:`TrainState` (:meth:`Trainer.state_dict`); every ``checkpoint_every``
                       steps and at the end, never with non-finite weights. A rerun resumes from it
                       bit for bit; a changed config starts afresh (see _fingerprint).
    best.pt            {"model", "step", "val_bound", "val_kl", "config"} of the best validation bound
    history.csv        a row per log/validation/curve step (columns: Trainer._history_fields)
    train_summary.json best and final validation bound and KL, steps, wall time, throughput, status
    config.json, provenance.json, samples.png (every ``sample_every`` steps)
and, when W&B is on (experiments.tracking), a training run with the history rows and sample grids,
continued on resume, and best.pt as its model artifact when training finishes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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
from .config import dump_json_if_changed, load_config, without_inactive_settings

__all__ = ["Trainer", "TrainState", "TrainingDiverged", "train", "lr_lambda"]

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
    c = without_inactive_settings(cfg)
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
    """Whether every parameter of ``model`` is finite."""
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


# ------------------------------------------------------------------------ training state
def _empty_window() -> dict:
    """Training statistics since the last history row."""
    return {"stats": [], "images": 0, "time": 0.0, "data_time": 0.0}


@dataclass
class TrainState:
    """Everything about a run that changes as it trains, besides the weights, optimiser, scheduler,
    loader and RNG states. Each field is the last.pt entry of the same name."""

    step: int = 0  # optimiser steps taken
    status: str = "running"  # running | completed | early_stopped
    best_val: float = -math.inf  # best validation bound so far (nats per image)...
    best_step: int | None = None  # ...reached at this step
    best_val_kl: dict | None = None  # ...with this KL per latent
    last_val: dict | None = None  # the latest validation: {"step", "bound", "kl"}
    bad_validations: int = 0  # validations since the best one (early stopping)
    history: list[dict] = field(default_factory=list)  # the rows of history.csv
    window: dict = field(default_factory=_empty_window)  # training stats since the last row
    images_seen: int = 0
    step_time: float = 0.0  # seconds spent in training steps, all sessions
    data_time: float = 0.0  # of which waiting for batches
    elapsed: float = 0.0  # wall time of the earlier sessions
    wandb_id: str | None = None  # the W&B training run, continued on resume

    def to_checkpoint(self, session_time: float = 0.0) -> dict:
        """last.pt's entries for this state; ``elapsed`` includes the current session's ``session_time``."""
        entries = {f.name: getattr(self, f.name) for f in fields(self)}
        entries["elapsed"] = self.elapsed + session_time
        return entries

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping) -> TrainState:
        """The state that :meth:`to_checkpoint` saved (a last.pt without a ``window`` starts an empty one)."""
        state = cls(**{f.name: ckpt[f.name] for f in fields(cls) if f.name != "window"})
        state.window = ckpt.get("window") or _empty_window()
        return state


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

    The run's progress is :attr:`state` (a :class:`TrainState`), restored from last.pt when there is one.
    """

    def __init__(
        self,
        cfg,
        out_dir,
        experiment: Experiment | None = None,
        device=None,
        max_steps: int | None = None,
        num_threads: int | None = None,
        wandb_mode: str | None = None,
    ):
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
        self.max_steps = int(self.tr.max_steps)
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
        self.fingerprint = _fingerprint(cfg)
        self.paths = {
            k: self.out / f
            for k, f in [
                ("last", "last.pt"),
                ("best", "best.pt"),
                ("config", "config.json"),
                ("provenance", "provenance.json"),
                ("history", "history.csv"),
                ("summary", "train_summary.json"),
                ("samples", "samples.png"),
            ]
        }

        self.state = TrainState()
        self.interrupt_requested = False  # set by a signal handler (experiments.train): save and stop after this step
        self._val_batches: list | None = None  # built on first use, then fixed
        self._curve_runs: list | None = None  # built on first use, then fixed
        self._session_start: float | None = None  # time.perf_counter() when fit() started
        self._last_saved_step: int | None = None  # the step of the last.pt this session wrote
        self._wandb = None  # the open W&B run, during fit()
        self._it = None  # the training loader's iterator, during fit()
        self._bar = None  # the progress bar, during fit()
        self.resumed_from = self._maybe_resume()

    @property
    def step(self) -> int:
        """Optimiser steps taken so far (``state.step``)."""
        return self.state.step

    # ------------------------------------------------------------------ checkpoint (last.pt, best.pt)
    def _components(self) -> dict:
        """The objects whose ``state_dict()`` last.pt holds, by entry name."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "train_loader": self.exp.train_loader,
        }

    def state_dict(self) -> dict:
        """last.pt's contents: the components' states, the RNG states, the :class:`TrainState`, the config."""
        return {
            "fingerprint": self.fingerprint,
            **{key: c.state_dict() for key, c in self._components().items()},
            "rng": rng_state(self.device),
            **self.state.to_checkpoint(session_time=self._session_time()),
            "config": self.cfg,
        }

    def load_state_dict(self, ckpt: Mapping) -> None:
        """Restore everything :meth:`state_dict` saved (but the config, which the fingerprint checked)."""
        for key, c in self._components().items():
            c.load_state_dict(ckpt[key])
        set_rng_state(ckpt["rng"], self.device)
        self.state = TrainState.from_checkpoint(ckpt)

    def _maybe_resume(self) -> int | None:
        """Load last.pt when it exists and fits this config -> its step; otherwise None (start afresh)."""
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
            log.warning(
                "could not read %s (%s: %s); moved it to %s and starting from scratch", path, type(e).__name__, e, bad
            )
            return None
        if ckpt.get("fingerprint") != self.fingerprint:
            stale = path.with_name(f"last.stale-{int(time.time())}.pt")
            os.replace(path, stale)
            log.warning(
                "%s was written for a different configuration; moved it to %s and starting from scratch", path, stale
            )
            return None
        self.load_state_dict(ckpt)
        if self.state.status == "completed" and self.state.step < self.max_steps:
            self.state.status = "running"  # max_steps was raised: continue
        log.info("resumed from %s at step %d", path, self.state.step)
        return self.state.step

    def save_last(self) -> None:
        """Write last.pt (refused, with :class:`TrainingDiverged`, when the weights are not finite)."""
        if not _finite_params(self.model):
            raise TrainingDiverged(
                f"parameters are not finite at step {self.state.step}; not overwriting {self.paths['last']}"
            )
        save_checkpoint(self.state_dict(), self.paths["last"])
        self._last_saved_step = self.state.step

    def _save_best(self, val: dict) -> None:
        """Write best.pt: the current weights with their validation bound and KL."""
        save_checkpoint(
            {
                "model": self.model.state_dict(),
                "step": self.state.step,
                "val_bound": val["bound"],
                "val_kl": val["kl"],
                "config": self.cfg,
            },
            self.paths["best"],
        )

    # ------------------------------------------------------------------ validation
    def _rng_fork(self):
        """A forked RNG (CPU, and CUDA on a CUDA device): what runs inside never moves the training RNG."""
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
                        bound, kl = self.model.score(
                            b.inputs,
                            b.sizes,
                            x=b.target,
                            kl_factor=1.0,
                            rescale=self.objective.rescale,
                            return_kl=True,
                            reduction="sum",
                        )
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
                    self._curve_runs = within_alphabet_runs(
                        self.exp.val_set, n_runs=cc["n_runs"], n_way=cc["n_way"], seed=self.seed + 17
                    )
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
        """history.csv's columns (training means over ``log_every`` steps, validation, learning curve)."""
        kl = [f"kl_{k}" for k in self.kl_latents]
        vkl = [f"val_kl_{k}" for k in self.kl_latents]
        return [
            "step",
            "loss",
            "bound",
            *kl,
            "lr",
            "kl_factor",
            "grad_norm",
            "images_per_s",
            "data_share",
            "time_s",
            "val_bound",
            *vkl,
            "val_acc",
        ]

    def _rewrite_history(self) -> None:
        """Write history.csv afresh from the state's rows (drops rows of steps after a resumed last.pt)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self._history_fields(), extrasaction="ignore")
        w.writeheader()
        for row in self.state.history:
            w.writerow(row)
        atomic_write_text(buf.getvalue(), self.paths["history"])

    def _append_history(self, row: dict) -> None:
        """Add a row to the state's history and to history.csv."""
        self.state.history.append(row)
        with open(self.paths["history"], "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._history_fields(), extrasaction="ignore").writerow(row)

    def _report(self, msg: str) -> None:
        """A message under the progress bar, or to the log when there is none."""
        if self._bar is not None and not self._bar.disable:
            self._bar.write(msg)
        else:
            log.info(msg)

    def _init_wandb(self):
        """Open (or, resumed, continue) the W&B training run; None when W&B is off."""
        from .tracking import new_run_id, open_run

        if not tracking_enabled(self.cfg):
            return None
        if self.state.wandb_id is None:
            self.state.wandb_id = new_run_id()
        return open_run(self.cfg, self.m["name"], job_type="train", run_id=self.state.wandb_id, config=self.cfg)

    def _wandb_log(self, data: dict) -> None:
        """Log to W&B at the current step; a failure warns and turns W&B off for this session."""
        if self._wandb is not None:
            try:
                self._wandb.log(data, step=self.state.step)
            except Exception as e:  # noqa: BLE001
                log.warning("W&B log failed (%s); disabling W&B", e)
                self._wandb = None

    def _samples(self) -> None:
        """Write samples.png (and log it to W&B); a failure only warns."""
        try:
            grid = self.sample_grid()
        except Exception as e:  # noqa: BLE001 - a failing sampler must not stop training
            log.warning("sampling failed at step %d: %s: %s", self.state.step, type(e).__name__, e)
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
    def fit(self, stop_after: int | None = None) -> dict | None:
        """Train until ``max_steps`` or early stopping; returns the summary.

        ``stop_after`` (tests): return right after that step as if the process were killed
        (only the regular checkpoints are on disk; returns None).
        """
        self._start_session()
        if self._already_done():
            return self._finish()
        self._open_session()
        try:
            while self.state.step < self.max_steps:
                self._train_step()
                row = {"step": self.state.step}
                self._maybe_log(row)
                self._maybe_validate(row)
                self._maybe_curve(row)
                self._maybe_write_row(row)
                self._maybe_sample()
                self._maybe_checkpoint()
                if self.state.status != "running":
                    break
                if stop_after is not None and self.state.step >= stop_after:
                    return None
                self._maybe_interrupt()
        finally:
            self._close_bar()
        return self._finish()

    def _start_session(self) -> None:
        """Start the session clock; write config.json, provenance.json and history.csv (the resumed rows)."""
        self._session_start = time.perf_counter()
        dump_json_if_changed(self.cfg, self.paths["config"])
        prov = provenance(self.cfg, self.device)
        prov["resumed_from_step"] = self.resumed_from
        dump_json_if_changed(prov, self.paths["provenance"])
        self._rewrite_history()
        self.model.train()

    def _session_time(self) -> float:
        """Seconds since fit() started (0 before)."""
        return 0.0 if self._session_start is None else time.perf_counter() - self._session_start

    def _already_done(self) -> bool:
        """Whether an earlier session finished the run (fit() then only rewrites the summary)."""
        s = self.state
        if s.status not in ("completed", "early_stopped") and s.step < self.max_steps:
            return False
        if s.status == "running":
            s.status = "completed"
        log.info("%s: already %s at step %d", self.m["name"], s.status, s.step)
        return True

    def _open_session(self) -> None:
        """Open the W&B run, the training loader's iterator and the progress bar."""
        from tqdm.auto import tqdm

        self._wandb = self._init_wandb()
        self._it = iter(self.exp.train_loader)
        self._bar = tqdm(
            total=self.max_steps,
            initial=self.state.step,
            desc=self.m["name"],
            unit="step",
            dynamic_ncols=True,
            disable=None,
            mininterval=1.0,
        )

    def _close_bar(self) -> None:
        """Close the progress bar (messages go to the log again)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _due(self, every: int) -> bool:
        """Whether a task run every ``every`` steps (0: never) and at the last step is due now."""
        step = self.state.step
        return bool(every) and (step % every == 0 or step == self.max_steps)

    def _train_step(self) -> None:
        """One optimiser step on the next batch, counted into the state, its window and the progress bar."""
        t0 = time.perf_counter()
        batch = self._next_batch()
        t1 = time.perf_counter()
        stats = self._optimise(batch)
        dt, dd, n = time.perf_counter() - t0, t1 - t0, len(batch.target)
        s, win = self.state, self.state.window
        s.step += 1
        s.images_seen += n
        s.step_time += dt
        s.data_time += dd
        win["stats"].append(stats)
        win["images"] += n
        win["time"] += dt
        win["data_time"] += dd
        self._show_progress(stats)

    def _maybe_log(self, row: dict) -> None:
        """Every ``log_every`` steps: the window's training means into ``row``; a new window starts."""
        if self._due(self.tr.log_every):
            row.update(self._window_row(self.state.window))
            self.state.window = _empty_window()

    def _maybe_validate(self, row: dict) -> None:
        """Every ``val_every`` steps: validate, into ``row``; keep best.pt, count towards early stopping."""
        if self._due(self.tr.val_every):
            self._after_validation(self.validate(), row)

    def _maybe_curve(self, row: dict) -> None:
        """Every ``one_shot_curve.every`` steps: the one-shot accuracy on the validation runs into ``row``."""
        if not self._due(int(self.tr.one_shot_curve["every"])):
            return
        acc = self.one_shot_accuracy()
        if acc is not None:
            row["val_acc"] = acc
            self._report(
                f"{self.m['name']} step {self.state.step}: one-shot accuracy on validation runs {100 * acc:.1f}%"
            )

    def _maybe_write_row(self, row: dict) -> None:
        """A row that holds more than its step goes to history.csv and W&B."""
        if len(row) > 1:
            row.setdefault("time_s", self.state.step_time)
            self._append_history(row)
            self._wandb_log({k: v for k, v in row.items() if v not in (None, "") and k != "step"})

    def _maybe_sample(self) -> None:
        """Every ``sample_every`` steps (0: never): samples.png and W&B."""
        every = int(self.tr.sample_every or 0)
        if every and self.state.step % every == 0:
            self._samples()

    def _maybe_checkpoint(self) -> None:
        """Mark the run completed at ``max_steps``; write last.pt every ``checkpoint_every`` steps and when it stops."""
        s = self.state
        if s.status == "running" and s.step >= self.max_steps:
            s.status = "completed"
        if s.step % int(self.tr.checkpoint_every) == 0 or s.status != "running":
            self.save_last()

    def _maybe_interrupt(self) -> None:
        """On a requested interrupt (SIGINT/SIGTERM): write last.pt and raise KeyboardInterrupt."""
        if self.interrupt_requested:
            self.save_last()
            raise KeyboardInterrupt(f"interrupted at step {self.state.step}; state saved to {self.paths['last']}")

    def kl_factor(self, step: int) -> float:
        """The KL weight after ``step`` steps: 0 -> 1 linearly over ``kl_anneal_steps`` (1 without annealing)."""
        n = int(self.tr.kl_anneal_steps or 0)
        return 1.0 if n <= 0 else min(1.0, step / n)

    def _optimise(self, batch) -> dict:
        """Forward, backward, clip, Adam and schedule steps on ``batch`` -> the step's statistics."""
        kl_factor = self.kl_factor(self.state.step)
        with self._autocast(training=True):
            bound, kl = self.model.score(
                batch.inputs,
                batch.sizes,
                x=batch.target,
                kl_factor=kl_factor,
                rescale=self.objective.rescale,
                return_kl=True,
            )
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
        return {
            "loss": loss_value,
            "bound": -loss_value,
            "kl": {k: float(v) for k, v in kl.items()},
            "lr": lr,
            "kl_factor": kl_factor,
            "grad_norm": grad_norm,
        }

    def _next_batch(self):
        """The next training batch (the loader starts its next epoch when one ends)."""
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.exp.train_loader)
            try:
                return next(self._it)
            except StopIteration:
                raise ValueError("the training loader yields no batches (fewer targets than batch_size?)") from None

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error for a non-finite ``what`` in the coming step, naming the last good checkpoint."""
        last = self.paths["last"]
        if last.is_file():
            good = f"the last good checkpoint is {last} (step {self._last_saved_step or self._last_step_on_disk()})"
        else:
            good = "no checkpoint was written yet"
        return TrainingDiverged(
            f"{what} at step {self.state.step + 1} of model {self.m['name']!r}; training stopped and nothing was "
            f"saved for this step: {good}. Lower train.lr, tighten train.grad_clip or add train.kl_anneal_steps, "
            f"then rerun (it resumes from last.pt)."
        )

    def _last_step_on_disk(self):
        """last.pt's step ("unknown" when it cannot be read)."""
        try:
            return read_checkpoint(self.paths["last"])["step"]
        except Exception:  # noqa: BLE001
            return "unknown"

    def _show_progress(self, stats: dict) -> None:
        """Advance the progress bar; every 10 steps show the loss, KL per latent and images/s."""
        self._bar.update(1)
        step, win = self.state.step, self.state.window
        if step % 10 == 0 or step == 1:
            post = {"loss": f"{stats['loss']:.1f}"}
            post.update({f"KL_{k}": f"{stats['kl'][k]:.1f}" for k in self.kl_latents if k in stats["kl"]})
            post["img/s"] = f"{win['images'] / max(win['time'], 1e-9):.0f}"
            self._bar.set_postfix(post, refresh=False)

    def _window_row(self, win: dict) -> dict:
        """A history row of the window's training statistics (means; the last lr and KL factor)."""
        window, n_images, t, t_data = win["stats"], win["images"], win["time"], win["data_time"]
        mean = lambda key: sum(s[key] for s in window) / len(window)  # noqa: E731
        row = {
            "step": self.state.step,
            "loss": mean("loss"),
            "bound": mean("bound"),
            "lr": window[-1]["lr"],
            "kl_factor": window[-1]["kl_factor"],
            "grad_norm": mean("grad_norm"),
            "images_per_s": n_images / max(t, 1e-9),
            "data_share": t_data / max(t, 1e-9),
        }
        for k in self.kl_latents:
            row[f"kl_{k}"] = sum(s["kl"].get(k, float("nan")) for s in window) / len(window)
        return row

    def _after_validation(self, val: dict, row: dict) -> None:
        """Record a validation: into ``row``, best.pt when it improved, early stopping after ``patience`` without."""
        s = self.state
        s.last_val = {"step": s.step, **val}
        row["val_bound"] = val["bound"]
        for k in self.kl_latents:
            row[f"val_kl_{k}"] = val["kl"].get(k)
        improved = val["bound"] > s.best_val
        if improved:
            s.best_val, s.best_step, s.best_val_kl = val["bound"], s.step, val["kl"]
            s.bad_validations = 0
            self._save_best(val)
        else:
            s.bad_validations += 1
        kl = ", ".join(f"KL_{k} {v:.2f}" for k, v in val["kl"].items())
        self._report(
            f"{self.m['name']} step {s.step}: val bound {val['bound']:.3f} nats/image ({kl})"
            f"{' *best*' if improved else f' (best {s.best_val:.3f} at step {s.best_step})'}"
        )
        patience = self.tr.patience
        if patience and s.bad_validations >= patience:
            s.status = "early_stopped"
            self._report(
                f"{self.m['name']}: early stopping at step {s.step} ({s.bad_validations} validations "
                f"without improvement; best {s.best_val:.3f} at step {s.best_step})"
            )

    # ------------------------------------------------------------------ the end
    def _finish(self) -> dict:
        """Write train_summary.json, log best.pt as the W&B model artifact, close W&B -> the summary."""
        s = self.state
        if not self.paths["best"].is_file():  # e.g. resumed a finished run whose best.pt was deleted
            val = self.validate()
            s.last_val = {"step": s.step, **val}
            s.best_val, s.best_step, s.best_val_kl = val["bound"], s.step, val["kl"]
            self._save_best(val)
        summary = self._summary()
        write_json(summary, self.paths["summary"])
        if self._wandb is not None:
            from .tracking import log_model

            log_model(self._wandb, self.paths["best"], self.cfg, self.m["name"], summary)  # warns on failure
            try:
                for k, v in summary.items():
                    if isinstance(v, (int, float, str)) or v is None:
                        self._wandb.summary[k] = v
                self._wandb.finish()
            except Exception as e:  # noqa: BLE001
                log.warning("W&B finish failed: %s", e)
            self._wandb = None
        return summary

    def _summary(self) -> dict:
        """train_summary.json: the model, its best and final validation, steps, times, throughput, status."""
        s = self.state
        last = s.last_val or {}
        return {
            "model": self.m["name"],
            "run": self.cfg["run"],
            "experiment": self.m["experiment"],
            "objective": self.m.get("objective"),
            "decoder": self.m.get("decoder"),
            "status": s.status,
            "steps": s.step,
            "max_steps": self.max_steps,
            "best_step": s.best_step,
            "best_val_bound": s.best_val,
            "best_val_kl": s.best_val_kl,
            "final_val_bound": last.get("bound"),
            "final_val_kl": last.get("kl"),
            "units": "val bounds: lower bound on log p(x) in nats per image (higher is better); KL in nats",
            "wall_time_s": s.elapsed + self._session_time(),
            "train_time_s": s.step_time,
            "images_seen": s.images_seen,
            "images_per_s": s.images_seen / s.step_time if s.step_time else None,
            "ms_per_step": 1000 * s.step_time / s.step if s.step else None,
            "data_share": s.data_time / s.step_time if s.step_time else None,
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device),
            "bf16_autocast": self.use_amp or self.use_amp_cpu,
            "num_threads": torch.get_num_threads(),
            "info": self.exp.info,
            "wandb_id": s.wandb_id if tracking_enabled(self.cfg) else None,
        }

    def close_wandb(self) -> None:
        """Close an open W&B run as failed (after an error; :meth:`fit` closes it itself when training ends)."""
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
