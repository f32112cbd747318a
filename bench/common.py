"""Shared helpers of the benchmarks: machine facts, timing, data, models, tables and JSON."""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch

from experiments.artifacts import git_commit
from experiments.common import MEMORY_FORMATS, apply_memory_format
from experiments.precision import cpu_name
from vhe.files import write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_MIRROR = "/work/shared/data/omniglot"
#: the background set's size (train_small.npz): what the synthetic fallback imitates
N_CLASSES, PER_CLASS, SIZE = 964, 20, 28
PROFILES = {"cpu": ROOT / "config" / "cpu.yaml", "paper": ROOT / "config" / "config.yaml"}
DECODERS = ("deconv", "pixelcnn")


# ----------------------------------------------------------------------- machine
def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: torch.device | str = "cpu") -> dict:
    """Where the numbers come from (stored in every result file)."""
    device = torch.device(device)
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
    }
    return info


def header(device, settings: dict) -> dict:
    """The common head of a result file: date, machine, load average, settings."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "load_average_start": load_average(),
        "settings": settings,
    }


def finish(
    result: dict, name: str, out: str | os.PathLike | None, columns: list[str], rows: list[dict], title: str
) -> dict:
    """Add the end load average, print the table and write the JSON (bench/results/<name>.json)."""
    result["load_average_end"] = load_average()
    result["rows"] = rows
    print(format_table(rows, columns, title=title))
    la = result.get("load_average_start")
    print(
        f"(load average at start {la}, end {result['load_average_end']}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()})"
    )
    path = Path(out) if out else RESULTS / f"{name}.json"
    write_json(result, path)
    print(f"wrote {path}")
    return result


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def format_table(rows: list[dict], columns: list[str], title: str | None = None, markdown: bool = False) -> str:
    """A small fixed-width (or markdown) table of ``rows`` restricted to ``columns``."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    if markdown:
        lines = ([f"**{title}**", ""] if title else []) + [
            "| " + " | ".join(columns) + " |",
            "|" + "|".join("---" for _ in columns) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = ([title, "=" * len(title)] if title else []) + [line, "-" * len(line)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


# ----------------------------------------------------------------------- timing
def resolve_device(spec: str | None) -> torch.device:
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {spec}: CUDA is not available on this machine")
    return dev


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """perf_counter after waiting for the device (so timings cover queued GPU work)."""
    sync(device)
    return time.perf_counter()


def autocast(device: torch.device, bf16: bool):
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------- data
def mirror_dir() -> Path:
    return Path(os.environ.get("VHE_DATA_MIRROR") or DEFAULT_MIRROR)


def synthetic_set(n_classes: int = N_CLASSES, per_class: int = PER_CLASS, seed: int = 0):
    """A stand-in for the background set: n_classes x per_class binary 28x28 images.

    Each class is a random prototype (about 10% ink) with 5% of its pixels flipped per image.
    Only the sizes matter for throughput.
    """
    from vhe.data.omniglot import OmniglotSet

    g = torch.Generator().manual_seed(seed)
    proto = torch.rand(n_classes, 1, 1, SIZE, SIZE, generator=g) < 0.1
    flip = torch.rand(n_classes, per_class, 1, SIZE, SIZE, generator=g) < 0.05
    images = (proto ^ flip).to(torch.uint8).reshape(n_classes * per_class, 1, SIZE, SIZE)
    character = torch.arange(n_classes).repeat_interleave(per_class)
    n_alpha = 30
    alphabet = character * n_alpha // n_classes
    return OmniglotSet(
        images=images,
        character=character,
        alphabet=alphabet,
        drawer=torch.arange(per_class).repeat(n_classes),
        character_names=[
            f"synthetic{a:02d}/character{c:03d}"
            for c, a in zip(range(n_classes), (torch.arange(n_classes) * n_alpha // n_classes).tolist())
        ],
        alphabet_names=[f"synthetic{a:02d}" for a in range(n_alpha)],
        source="synthetic",
    )


@lru_cache(maxsize=2)
def background_set(allow_mirror: bool = True):
    """(OmniglotSet, source): train_small.npz from the mirror, else the synthetic stand-in."""
    path = mirror_dir() / "train_small.npz"
    if allow_mirror and path.is_file():
        try:
            from vhe.data import load_npz_arrays

            return load_npz_arrays(path), str(path)
        except Exception as e:  # noqa: BLE001 - a broken mirror must not stop the benchmark
            print(f"[bench] could not read {path} ({type(e).__name__}: {e}); using the synthetic set", file=sys.stderr)
    return synthetic_set(), f"synthetic {N_CLASSES}x{PER_CLASS}x{SIZE}x{SIZE}"


# ----------------------------------------------------------------------- models
_TMP: tempfile.TemporaryDirectory | None = None


def _background_pt() -> tuple[str, str]:
    """The background set saved once per process as a .pt the experiment builders can read."""
    global _TMP
    s, source = background_set()
    if _TMP is None:
        _TMP = tempfile.TemporaryDirectory(prefix="vhe-bench-")
    path = Path(_TMP.name) / "background.pt"
    if not path.is_file():
        s.save(path)
    return str(path), source


def profile_config(profile: str, decoder: str, objective: str = "vhe") -> dict:
    """The per-model config of ``<objective>_<decoder>`` in a profile (cpu | paper | path to a yaml)."""
    from experiments.config import load_config, model_config

    path = PROFILES.get(profile, profile)
    if not Path(path).is_file():
        raise FileNotFoundError(f"profile {profile!r}: {path} does not exist")
    cfg = load_config(path)
    name = f"{objective}_{decoder}"
    models = cfg.get("models") or {}
    if name not in models:  # the profile may train fewer models: benchmark the architecture anyway
        cfg["models"] = {**models, name: {"experiment": "class", "objective": objective, "decoder": decoder}}
    cfg = model_config(cfg, name)
    cfg["wandb"]["mode"] = "disabled"
    return cfg


def build(
    profile: str,
    decoder: str,
    device: torch.device,
    batch_size: int | None = None,
    max_characters: str | int | None = "profile",
):
    """(Experiment, cfg, data source) of the class-structured VHE of a profile, on ``device``.

    Built with ``experiments.registry.build_experiment`` on the background set (mirror or
    synthetic). ``max_characters="profile"`` keeps the profile's setting; None uses all.
    """
    from experiments.registry import build_experiment

    cfg = profile_config(profile, decoder)
    path, source = _background_pt()
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("paths", {})["background"] = path
    if max_characters != "profile":
        cfg["data"]["max_characters"] = max_characters
    if batch_size is not None:
        cfg["model"]["train"]["batch_size"] = int(batch_size)
    cfg["device"] = str(device)
    torch.manual_seed(0)
    exp = build_experiment(cfg, device)
    return exp, cfg, source


def each_model(profiles, decoders, device: torch.device, skipped: list[dict]):
    """Yield (profile, decoder, Experiment, cfg, data source) of ``build`` for every profile × decoder.

    A profile whose files are missing (FileNotFoundError) is skipped: appended to ``skipped`` as
    {"profile", "decoder", "reason"} and reported on stdout.
    """
    for profile in profiles:
        for decoder in decoders:
            try:
                exp, cfg, source = build(profile, decoder, device)
            except FileNotFoundError as e:
                skipped.append({"profile": profile, "decoder": decoder, "reason": str(e)})
                print(f"[bench] skipped {profile}/{decoder}: {e}")
                continue
            yield profile, decoder, exp, cfg, source


def layouts(cfg: dict, requested=None) -> list[str]:
    """Memory formats to measure: ``requested`` (``--memory-formats``), else the loaded profile's own."""
    return list(requested) if requested else [cfg["memory_format"]]


def lay_out(model: torch.nn.Module, memory_format: str) -> torch.nn.Module:
    """``model`` re-laid out as ``memory_format`` (what the config key of that name does)."""
    return apply_memory_format(model, {"memory_format": memory_format})


def add_memory_formats_argument(parser) -> None:
    """``--memory-formats``: the layouts a benchmark measures (``layouts``' ``requested``)."""
    parser.add_argument(
        "--memory-formats",
        nargs="+",
        default=None,
        choices=list(MEMORY_FORMATS),
        help="contiguous and/or channels_last: measure each (default: the profile's memory_format)",
    )


def arch_summary(cfg: dict) -> dict:
    m = cfg["model"]
    nets = m["nets"]
    out = {k: nets.get(k) for k in ("c_dim", "z_dim", "hidden", "conv_channels", "conv_layers", "deconv_channels")}
    if m.get("decoder") == "pixelcnn":
        out["pixelcnn"] = dict(nets["pixelcnn"])
    return out


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
