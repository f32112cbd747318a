"""Trainer checkpoints (best.pt, last.pt) that load without running code.

A checkpoint is a dict of tensors and plain Python values only (str, int, float, bool, None,
lists, tuples, dicts), so it is read with ``torch.load(weights_only=True)``, which refuses any
pickled object: evaluating a ``best.pt`` someone shared cannot execute code. What the trainer
used to pickle is stored as data:

- ``config_json``: the resolved per-model config as JSON text (read back as ``ckpt["config"]``);
- RNG states: torch's as a uint8 tensor, numpy's and Python's as int64 tensors plus numbers
  (:func:`rng_state` / :func:`set_rng_state`);
- everything else (step, bounds, history rows) as numbers, strings, lists and dicts.

Format version 2. A version-1 checkpoint (earlier versions of this project pickled numpy RNG
states) is refused with an error that names the one-time conversion command:

    python -m experiments.checkpoints convert results/<run>/checkpoints/<model>/*.pt

The conversion never unpickles arbitrary objects either: it loads with ``weights_only=True`` and
admits, besides tensors and plain values, exactly the globals a format-1 checkpoint holds
(:data:`FORMAT_1_GLOBALS`: numpy arrays, dtypes and scalars, for numpy's RNG state). A file
holding any other global (a class, a function) is refused, by ``read_checkpoint`` too, with an
error naming the globals and without the conversion hint: it is not a checkpoint of this project.
``convert`` writes nothing for a refused or unreadable file (exit status 1, the error on stderr).
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from vhe.files import atomic_torch_save

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointFormatError",
    "FORMAT_1_GLOBALS",
    "save_checkpoint",
    "read_checkpoint",
    "load_weights",
    "rng_state",
    "set_rng_state",
    "convert",
]

CHECKPOINT_VERSION = 2
#: numpy's dtype classes whose instances a format-1 checkpoint may hold (RNG keys, numbers)
_DTYPE_CLASSES = (
    "BoolDType",
    "Int8DType",
    "Int16DType",
    "Int32DType",
    "Int64DType",
    "UInt8DType",
    "UInt16DType",
    "UInt32DType",
    "UInt64DType",
    "Float16DType",
    "Float32DType",
    "Float64DType",
)


class CheckpointFormatError(ValueError):
    """The file is not a safe (version-2) checkpoint of this project; the message says whether and how
    to convert it."""


def _format_1_globals() -> list:
    """What ``torch.load(weights_only=True)`` must admit, beyond its defaults, to read a format-1
    checkpoint: numpy arrays, dtypes and scalars (under numpy 1's and numpy 2's module names)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    out: list = [np.ndarray, np.dtype]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    out += [getattr(dtypes, n) for n in _DTYPE_CLASSES if dtypes is not None and hasattr(dtypes, n)]
    return out


def _global_name(g) -> str:
    return g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"


#: the allowlist of :func:`convert`, by the names a pickle refers to them
FORMAT_1_GLOBALS: frozenset[str] = frozenset(_global_name(g) for g in _format_1_globals())


def _convert_hint(path) -> str:
    return (
        f"convert it once with `python -m experiments.checkpoints convert {path}` (it reads only tensors, "
        f"numbers and numpy arrays and refuses anything else), or retrain"
    )


def _pickled_globals(path) -> list[str] | None:
    """The globals (classes, functions) a checkpoint's pickle names beyond torch's safe defaults,
    found without unpickling; ``None`` when the file cannot be scanned (not a zip checkpoint)."""
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    if scan is None:
        return None
    try:
        return sorted(set(scan(str(path))))
    except Exception:  # noqa: BLE001 - unscannable: the caller refuses the file anyway
        return None


def _torch_reason(e: Exception) -> str:
    """The gist of torch's weights-only refusal (its text also suggests weights_only=False: left out)."""
    text = str(e)
    i = text.find("WeightsUnpickler error:")
    rest = text[i + len("WeightsUnpickler error:") :] if i >= 0 else text
    first = next((line.strip() for line in rest.splitlines() if line.strip()), type(e).__name__)
    return first.split(". ")[0]


def _refusal(path, e: Exception, convertible_hint: bool) -> CheckpointFormatError:
    """The error for a file whose pickle ``torch.load(weights_only=True)`` refused: the conversion
    hint only for a format-1 checkpoint (every global in :data:`FORMAT_1_GLOBALS`)."""
    names = _pickled_globals(path)
    unknown = None if names is None else [n for n in names if n not in FORMAT_1_GLOBALS]
    if unknown == [] and convertible_hint:
        return CheckpointFormatError(
            f"{path} holds pickled numpy objects: it is a checkpoint of an earlier version "
            f"of this project; {_convert_hint(path)}."
        )
    if unknown:
        what = (
            f"{path} holds pickled Python objects ({', '.join(unknown)}), which this project never loads "
            f"(loading them can run arbitrary code)"
        )
    else:
        what = f"{path} cannot be read with torch.load(weights_only=True) ({_torch_reason(e)})"
    return CheckpointFormatError(
        f"{what}. No checkpoint of this project is like this, so the file is refused and "
        f"will not be converted; retrain, or get the checkpoint again from where it was made"
    )


def save_checkpoint(state: Mapping, path) -> Path:
    """Write ``state`` (a dict with ``model`` weights, optionally ``config``) atomically to ``path``.

    ``config`` is stored as JSON text under ``config_json``; the version is set to
    :data:`CHECKPOINT_VERSION`. Anything that ``torch.load(weights_only=True)`` cannot read back
    (an object that needs unpickling) raises ``TypeError`` here, before the file is replaced.
    """
    out = {k: v for k, v in state.items() if k != "config"}
    if "config" in state:
        out["config_json"] = json.dumps(state["config"], sort_keys=True, allow_nan=True)
    out["version"] = CHECKPOINT_VERSION
    return atomic_torch_save(_plain(out, "checkpoint"), path)


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _plain(obj, where: str):
    """``obj`` with numpy scalars turned into Python numbers; TypeError names anything else that
    ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, Mapping):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}, not a str or int")
        return {k: _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if not isinstance(obj, _PLAIN):
        raise TypeError(
            f"{where} is a {type(obj).__module__}.{type(obj).__name__}: a checkpoint holds only "
            f"tensors and plain Python values (it is loaded with torch.load(weights_only=True))"
        )
    return obj


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)`` -> dict (``config`` decoded from JSON).

    Raises :class:`CheckpointFormatError` (naming the conversion command) for a file that carries
    pickled objects or was written in an older format, and ``FileNotFoundError`` for a missing one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(path, e, convertible_hint=True) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointFormatError(f"{path} is not a checkpoint of this project (no 'model' weights)")
    version = ckpt.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointFormatError(
            f"{path} is a format-{version} checkpoint; this version reads format "
            f"{CHECKPOINT_VERSION}: {_convert_hint(path)}"
        )
    if "config_json" in ckpt:
        ckpt["config"] = json.loads(ckpt.pop("config_json"))
    return ckpt


def load_weights(model: torch.nn.Module, path, device=None) -> dict:
    """Load a checkpoint's weights into ``model``, move it to ``device`` and put it in eval mode.

    Returns the checkpoint dict (``step``, ``val_bound``, ``config``, ...).
    """
    ckpt = read_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    if device is not None:
        model.to(device)
    model.eval()
    return ckpt


# ----------------------------------------------------------------------------- RNG states as data
def _numpy_state(state: tuple) -> dict:
    """``np.random.get_state()``'s tuple as tensors and numbers."""
    name, keys, pos, has_gauss, gauss = state
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(gauss),
    }


def _python_state(state: tuple) -> dict:
    """``random.getstate()``'s tuple as a tensor and numbers."""
    version, internal, gauss_next = state
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}


def rng_state(device: torch.device | None = None) -> dict:
    """torch, numpy and Python RNG states (and CUDA's on a CUDA device) as tensors and numbers."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(np.random.get_state()),
        "python": _python_state(random.getstate()),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping, device: torch.device | None = None) -> None:
    """Restore the states written by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if device is not None and device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


# ----------------------------------------------------------------------------- one-time conversion
def _load_format_1(path: Path) -> dict:
    """``torch.load(weights_only=True)`` admitting :data:`FORMAT_1_GLOBALS` and nothing else."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if safe_globals is None:
        raise CheckpointFormatError(
            f"cannot convert {path}: reading a format-1 checkpoint safely needs "
            f"torch >= 2.5 (torch.serialization.safe_globals); this is {torch.__version__}"
        )
    try:
        with safe_globals(_format_1_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(path, e, convertible_hint=False) from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointFormatError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); nothing was converted"
        ) from None


def convert(path, out=None) -> Path:
    """Rewrite a format-1 checkpoint (numpy RNG state as arrays, numpy numbers) in format 2.

    Reads with ``torch.load(weights_only=True)`` plus :data:`FORMAT_1_GLOBALS`: a file holding any
    other global raises :class:`CheckpointFormatError` naming it, before anything is unpickled or
    written. ``out`` defaults to ``path`` (replaced atomically). Returns the written path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    old = _load_format_1(path)
    if not isinstance(old, dict) or "model" not in old:
        raise CheckpointFormatError(f"{path} is not a checkpoint of this project (no 'model' weights)")
    if old.get("version") == CHECKPOINT_VERSION:
        return path
    new = dict(old)
    rng = old.get("rng")
    if rng is not None and not isinstance(rng.get("numpy"), dict):
        new["rng"] = {**rng, "numpy": _numpy_state(rng["numpy"]), "python": _python_state(rng["python"])}
    return save_checkpoint(new, out if out is not None else path)


def main(argv=None) -> int:
    """CLI: ``convert PATH...``; exit status 0 when every file converted (or was already format 2),
    1 when any was refused or unreadable (each named on stderr; those files are left as they were)."""
    ap = argparse.ArgumentParser(
        prog="python -m experiments.checkpoints",
        description="Convert checkpoints of earlier versions to the safe format 2.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "convert",
        help="rewrite format-1 checkpoints in place (reads only tensors, numbers and "
        "numpy arrays; refuses any other pickled object)",
    )
    c.add_argument("paths", nargs="+", type=Path)
    args = ap.parse_args(argv)
    status = 0
    for p in args.paths:
        try:
            convert(p)
            read_checkpoint(p)  # what was written loads safely
        except (CheckpointFormatError, FileNotFoundError, TypeError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"converted {p}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
