"""Atomic file writes: a reader never sees a half-written checkpoint, metrics file or figure.

:func:`write_json` is the one JSON writer of the project: strict JSON, atomically. Tensors and
numpy values become Python numbers; a non-finite float (a diverged model's NaN, an infinite
bound) is never written as a number: it becomes ``null`` and its dotted key is listed, with the
reason when the caller gives one, under ``non_finite``, so a reader sees *why* a value is missing.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "atomic_torch_save", "json_ready", "remove_orphans", "write_json"]


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file keeps ``path``'s suffix (so writers that infer a format from it work) and
    is removed if the block raises. Parent folders are created. The data are flushed to disk
    (``fsync``) before the rename, so a write error the filesystem reports late (a full disk on
    NFS or btrfs) fails the block and leaves the previous ``path`` in place instead of replacing
    it with a truncated file. A process killed inside the block (SIGKILL) can leave the hidden
    temporary file ``.<name>.<host>-<pid>.<random><suffix>`` behind; it is never ``path``, readers
    of result folders skip hidden files, and the next write of the same ``path`` removes it
    (:func:`remove_orphans`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix or ".tmp"
    remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: this machine's name as it appears in temporary file names (letters, digits and '_')
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_orphans(path) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it; return them.

    A temporary file ``.<name>.<host>-<pid>.<random><suffix>`` is an orphan when ``host`` is this
    machine and process ``pid`` no longer exists. Files of live processes, of other machines
    (a shared filesystem) and of unknown form are left alone, so a concurrent writer elsewhere
    never loses its file.
    """
    path = Path(path)
    suffix = path.suffix or ".tmp"
    pattern = re.compile(
        rf"^\.{re.escape(path.name)}\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+"
        rf"{re.escape(suffix)}$"
    )
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except FileNotFoundError:
        return removed
    for p in siblings:
        m = pattern.match(p.name)
        if not m or m["host"] != _HOST or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def atomic_write_text(text: str, path) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_torch_save(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (parent folders created); returns the path.

    The file is written through an open handle: given a file name, ``torch.save`` names the
    archive inside the zip after it, which here would be the random temporary name, so the same
    object would give different bytes on every save. Through a handle the bytes depend on
    ``obj`` only."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def json_ready(obj, where: str = "", bad: list | None = None):
    """A JSON-ready copy of ``obj``: tensors/numpy -> Python, paths/devices -> str, non-finite
    floats -> None (their dotted keys appended to ``bad``)."""
    import numpy as np
    import torch

    bad = [] if bad is None else bad
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v, f"{where}.{k}" if where else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v, f"{where}[{i}]", bad) for i, v in enumerate(obj)]
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        bad.append(where)
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"{where or 'value'}: a {type(obj).__name__} is not JSON serialisable")


def write_json(obj: Mapping, path, reasons: Mapping[str, str] | None = None) -> list[str]:
    """Write ``obj`` as strict JSON to ``path`` atomically; returns the keys of non-finite values.

    Non-finite floats are written as null and listed under ``obj["non_finite"]`` as
    ``{dotted key: reason}``; the reason is the first entry of ``reasons`` whose key is a prefix
    of the dotted key, else "not finite (nan or inf)".
    """
    bad: list[str] = []
    out = json_ready(obj, bad=bad)
    if bad:
        reasons = dict(reasons or {})

        def why(key):
            for prefix, text in reasons.items():
                if key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "["):
                    return text
            return "not finite (nan or inf)"

        out["non_finite"] = {**(out.get("non_finite") or {}), **{k: why(k) for k in bad}}
    atomic_write_text(json.dumps(out, indent=2, allow_nan=False) + "\n", path)
    return bad
