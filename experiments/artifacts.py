"""The one way the project writes a result's figures and provenance (metrics JSON:
:func:`vhe.files.write_json`).

- :func:`save_figure`: a matplotlib figure as PNG and PDF twins (150 dpi), each written atomically.
- :func:`provenance`: git commit, versions, device, host, date, seed and command of a result.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import torch

from vhe.files import atomic_path

__all__ = ["FIGURE_DPI", "FIGURE_FORMATS", "save_figure", "provenance", "run_provenance", "git_commit"]

FIGURE_FORMATS = ("png", "pdf")
FIGURE_DPI = 150


def save_figure(fig, path, formats: Iterable[str] = FIGURE_FORMATS, dpi: int = FIGURE_DPI) -> list[str]:
    """Save ``fig`` beside ``path`` once per format (``path``'s suffix is replaced), atomically,
    then close it. Returns the written paths (str)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    out = []
    try:
        for ext in formats:
            target = path.with_suffix(f".{ext}")
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
            out.append(str(target))
    finally:
        plt.close(fig)
    return out


def git_commit() -> str:
    """HEAD of the checkout this code runs from ("unknown" outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(cfg: Mapping | None = None, device=None, seed: int | None = None) -> dict:
    """Where and how a result was produced: git commit, torch/python/vhe versions, device, threads,
    host, UTC date, seed (``seed``, else the config's) and command line."""
    import vhe

    device = torch.device(device if device is not None else "cpu")
    return {
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "vhe": getattr(vhe, "__version__", "unknown"),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "num_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": int(seed) if seed is not None else (cfg or {}).get("seed"),
        "command": [sys.executable, *sys.argv],
    }


def run_provenance(run_dir) -> dict:
    """What the metrics files of a run (``<run_dir>/metrics/*.json``, each with the
    :func:`provenance` it was written with) say of it: {"date": [dates], "git_commit",
    "hostname", "torch": sets of the values found}."""
    import json

    seen = {"date": [], "git_commit": set(), "hostname": set(), "torch": set()}
    for path in sorted((Path(run_dir) / "metrics").glob("*.json")):
        prov = (json.loads(path.read_text()) or {}).get("provenance") or {}
        if prov.get("date"):
            seen["date"].append(prov["date"])
        for key in ("git_commit", "hostname", "torch"):
            if prov.get(key):
                seen[key].add(str(prov[key]))
    return seen
