"""Fault injection for the pipeline's fault tests (tests/pipeline/test_faults.py).

**Killing a stage at a chosen write.** Every output of the project is written through
:func:`vhe.files.atomic_path`: a hidden temporary file ``.<name>.<random><suffix>`` beside the
output, renamed onto it with ``os.replace``. :func:`fault_env` returns an environment whose
``PYTHONPATH`` starts with a folder holding a ``sitecustomize.py`` (:data:`SITECUSTOMIZE`), which
Python imports at start-up in every process, Snakemake's jobs included. It wraps ``os.replace``;
in the process whose ``__main__`` is the named module (``python -m <module>``; Snakemake's own
process is never touched) the ``n``-th atomic rename does one of:

- ``kill-mid``: truncate the temporary file to half its size (what a write cut short leaves on
  disk), then SIGKILL the process before the rename;
- ``kill-after``: rename, then SIGKILL (the output is complete, the job's other outputs are not);
- ``pause-mid`` / ``pause-after``: the same, but the process then sleeps, so the test can SIGKILL
  the whole process group (Snakemake and its job together, as when a machine is lost).

Each writes the marker file (the output's path) first, so a test knows the fault fired, and
never waits on a timer. ``trace`` lists every atomic rename of the process (one path a line).

**A full disk.** :func:`full_disk` patches ``open`` so that writes to a temporary file of
``atomic_path`` fail with ENOSPC after a given number of bytes (part of the file is written).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SITECUSTOMIZE = r"""
# written by tests/pipeline/faults.py: SIGKILL or pause this process at its n-th atomic write
import json as _json
import os as _os
import signal as _signal
import sys as _sys
import time as _time

_SPEC = _json.loads(_os.environ.get("VHE_FAULT") or "{}")
if _SPEC:
    _real_replace = _os.replace
    _count = [0]

    def _is_target():
        spec = getattr(_sys.modules.get("__main__"), "__spec__", None)
        return getattr(spec, "name", None) == _SPEC["module"]

    def _replace(src, dst, *args, **kwargs):
        s, d = _os.path.basename(_os.fspath(src)), _os.path.basename(_os.fspath(dst))
        if not (s.startswith("." + d + ".") and _is_target()):
            return _real_replace(src, dst, *args, **kwargs)
        _count[0] += 1
        n, action = _SPEC.get("n"), _SPEC.get("action")
        hit = n is not None and _count[0] == n
        if hit and action.endswith("-mid"):
            size = _os.path.getsize(src)
            with open(src, "r+b") as f:
                f.truncate(size // 2)
        else:
            _real_replace(src, dst, *args, **kwargs)
            if _SPEC.get("trace"):
                with open(_SPEC["trace"], "a") as f:
                    f.write(_os.path.abspath(_os.fspath(dst)) + "\n")
        if hit:
            with open(_SPEC["marker"], "w") as f:
                f.write(_os.path.abspath(_os.fspath(dst)) + "\n")
            if action.startswith("kill"):
                _os.kill(_os.getpid(), _signal.SIGKILL)
            # pause-*: the test kills the process group; should that miss this process, it
            # ends itself once its parent is gone, and after 5 minutes at most
            parent, until = _os.getppid(), _time.monotonic() + 300
            while _os.getppid() == parent and _time.monotonic() < until:
                _time.sleep(0.1)
            _os.kill(_os.getpid(), _signal.SIGKILL)

    _os.replace = _replace
"""


def base_env(**extra) -> dict:
    """The environment of every subprocess of the fault tests: one thread, no display, W&B off,
    reproducible PDFs (matplotlib dates them by SOURCE_DATE_EPOCH), the checkout importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("VHE_FAULT",)}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MPLBACKEND="Agg",
        SOURCE_DATE_EPOCH="0",
        WANDB_MODE="disabled",
        PYTHONHASHSEED="0",
    )
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra)
    return env


def fault_env(
    tmp_path, module: str, n: int | None = None, action: str = "kill-mid", trace: bool = False, **extra
) -> tuple[dict, Path, Path]:
    """(environment, marker file, trace file) for a process to be faulted at its n-th atomic write
    (``n=None``: no fault, only the trace)."""
    hook = Path(tmp_path) / "fault_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker, trace_file = hook / "fired", hook / "trace"
    for f in (marker, trace_file):
        if f.exists():
            f.unlink()
    env = base_env(**extra)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    env["VHE_FAULT"] = json.dumps(
        {"module": module, "n": n, "action": action, "marker": str(marker), "trace": str(trace_file) if trace else None}
    )
    return env, marker, trace_file


def traced(trace_file: Path) -> list[str]:
    return trace_file.read_text().split() if trace_file.exists() else []


def run_module(module: str, args, env, cwd=None, timeout=240) -> subprocess.CompletedProcess:
    """``python -m module args`` (returncode -9 when it was SIGKILLed)."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def snakemake_cmd(workdir, targets, configfile, *options) -> list[str]:
    """Targets before ``--configfile`` (which takes several files)."""
    exe = Path(sys.executable).parent / "snakemake"
    base = [str(exe)] if exe.is_file() else [sys.executable, "-m", "snakemake"]
    return [
        *base,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        *map(str, targets),
        "--cores",
        "1",
        *options,
        "--configfile",
        str(configfile),
    ]


def snakemake(workdir, targets, configfile, *options, env, check=True, timeout=300) -> subprocess.CompletedProcess:
    cmd = snakemake_cmd(workdir, targets, configfile, *options)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def kill_group_when(cmd, env, marker: Path, timeout=240) -> subprocess.CompletedProcess:
    """Start ``cmd`` in its own process group, wait until ``marker`` appears (the fault fired),
    then SIGKILL the whole group (Snakemake and its jobs). Fails if the command ends first."""
    with open(marker.with_suffix(".out"), "w+") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not marker.exists():
                if proc.poll() is not None:
                    out.seek(0)
                    raise AssertionError(
                        f"{' '.join(cmd)} ended ({proc.returncode}) before the fault fired:\n{out.read()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(f"the fault did not fire within {timeout} s")
                time.sleep(0.1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        out.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), "")


# --------------------------------------------------------------------------- comparing outputs
def snapshot(root: Path, files=None) -> dict[str, bytes]:
    """{relative path: bytes} of ``files`` (default: every non-hidden file under ``root``)."""
    root = Path(root)
    paths = (
        [root / f for f in files]
        if files is not None
        else [
            p
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ]
    )
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(paths) if p.is_file()}


def hidden_temporaries(root: Path) -> list[Path]:
    """Files an interrupted atomic write left behind (``.<name>.<host>-<pid>.<random><suffix>``)."""
    return sorted(
        p
        for p in Path(root).rglob(".*")
        if p.is_file() and ".snakemake" not in p.parts and re.match(r"^\..+\.[^.]+\..*$", p.name)
    )


#: fields that record when and how long, not what: left out when metrics JSON are compared
VOLATILE = ("provenance.date", "eval_seconds")


def without(data, keys=VOLATILE):
    data = json.loads(json.dumps(data))
    for key in keys:
        *parents, last = key.split(".")
        d = data
        for p in parents:
            d = d.get(p, {}) if isinstance(d, dict) else {}
        if isinstance(d, dict):
            d.pop(last, None)
    return data


def html_without_styler_ids(text: str) -> str:
    """pandas' Styler gives every rendered table a random id (``T_1a2b3``)."""
    return re.sub(r"T_[0-9a-f]{5}", "T_xxxxx", text)


def same_outputs(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    """Names whose contents differ: bytes, except metrics JSON without :data:`VOLATILE` and
    summary.html without Styler ids."""
    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))
    bad = []
    for name, x in a.items():
        y = b[name]
        if name.endswith(".json"):
            x, y = without(json.loads(x)), without(json.loads(y))
        elif name.endswith(".html"):
            x, y = html_without_styler_ids(x.decode()), html_without_styler_ids(y.decode())
        if x != y:
            bad.append(name)
    return bad


# --------------------------------------------------------------------------- a full disk
class _FullFile:
    """A file object whose writes fail with ENOSPC once ``budget`` bytes are written (the
    bytes up to the budget reach the file, as on a disk that fills up mid-write); everything
    else is the real file's."""

    def __init__(self, f, state):
        self._f, self._state = f, state

    def write(self, data):
        if not isinstance(data, str):
            data = memoryview(data).cast("B")
        room = self._state["budget"] - self._state["written"]
        if len(data) > room:
            if room > 0:
                self._f.write(data[:room])
                self._state["written"] += room
            self._f.flush()
            self._state["failed"] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._state["written"] += len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@contextlib.contextmanager
def full_disk(monkeypatch, budget: int):
    """Inside the block, files opened for writing under an ``atomic_path`` temporary name
    (hidden, ``.<name>.``) fail with ENOSPC after ``budget`` bytes in all. Yields the state
    ({"budget", "written", "failed"})."""
    state = {"budget": budget, "written": 0, "failed": 0}
    real_open = builtins.open

    def patched(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        name = os.path.basename(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""
        if name.startswith(".") and any(c in mode for c in "wax+"):
            return _FullFile(f, state)
        return f

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", patched)
        m.setattr(io, "open", patched)
        yield state
