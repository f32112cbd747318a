"""Weights & Biases: the one place the project opens a run (offline by default, never an account).

Runs live in ``<paths.results>/wandb/`` (``wandb sync results/<run>/wandb/offline-run-*`` uploads
them later), are grouped by profile (``group=<run>``) and named ``<run>/<model>``. Each model has
one run: the trainer opens it (``job_type="train"``) and stores its id in ``train_summary.json``;
the evaluators resume the same id, so training and evaluation land in one W&B run (offline, the
resumed session is a second ``offline-run-*`` folder with the same id, merged by ``wandb sync``).
The summary page of a profile is its own run (``job_type="evaluate"``, named ``<run>/summary``).

Logging never stops a job: a W&B error is a warning and the run is dropped.
"""
from __future__ import annotations

import glob
import json
import logging
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("experiments.tracking")

__all__ = ["enabled", "new_run_id", "open_run", "log_summary", "log_images", "log_tables", "finish", "log_evaluation",
           "training_run_id", "offline_runs", "offline_records", "missing_tracking"]


def enabled(cfg: Mapping) -> bool:
    """Whether ``cfg`` logs to W&B at all (``wandb.mode`` is not disabled)."""
    return (cfg.get("wandb") or {}).get("mode", "disabled") != "disabled"


def new_run_id() -> str:
    """A fresh 8-character run id."""
    return uuid.uuid4().hex[:8]


def open_run(cfg: Mapping, name: str, *, job_type: str, run_id: str | None = None, config: Mapping | None = None):
    """Open (or resume, when ``run_id`` names an existing run) the W&B run ``<run>/<name>``.

    ``cfg`` is a resolved config (its ``wandb`` section, ``run`` and ``paths.results``). Returns
    the run, or None when ``wandb.mode`` is disabled or W&B fails to start.
    """
    if not enabled(cfg):
        return None
    settings = cfg["wandb"]
    mode = settings["mode"]
    try:
        import wandb

        wdir = Path(cfg["paths"]["results"])  # W&B writes <results>/wandb/offline-run-*
        wdir.mkdir(parents=True, exist_ok=True)
        return wandb.init(mode=mode, project=settings.get("project"), entity=settings.get("entity"),
                          name=f"{cfg['run']}/{name}", config=dict(config) if config is not None else None,
                          dir=str(wdir), id=run_id or new_run_id(), resume="allow", job_type=job_type,
                          group=cfg["run"], reinit="finish_previous")
    except Exception as e:  # noqa: BLE001 - logging must never stop a job
        log.warning("W&B disabled for %s: %s: %s", name, type(e).__name__, e)
        return None


def _guard(run, what: str, fn) -> bool:
    if run is None:
        return False
    try:
        fn()
        return True
    except Exception as e:  # noqa: BLE001
        log.warning("W&B %s failed: %s: %s", what, type(e).__name__, e)
        return False


def log_summary(run, values: Mapping) -> bool:
    """Set summary values (numbers, strings; None and non-finite numbers are skipped)."""
    def go():
        for k, v in values.items():
            if v is None or (isinstance(v, float) and v != v):
                continue
            run.summary[k] = v
    return _guard(run, "summary", go)


def log_tables(run, tables: Mapping) -> bool:
    """Log pandas DataFrames as ``wandb.Table`` s under their keys."""
    def go():
        import wandb

        run.log({k: wandb.Table(dataframe=df.astype(object).where(df.notna(), None)) for k, df in tables.items()})
    return _guard(run, "tables", go)


def log_images(run, images: Mapping) -> bool:
    """Log image files (PNG paths) as ``wandb.Image`` s under their keys; missing files are skipped."""
    def go():
        import wandb

        run.log({k: wandb.Image(str(p), caption=Path(p).name) for k, p in images.items() if Path(p).is_file()})
    return _guard(run, "images", go)


def finish(run, exit_code: int = 0) -> None:
    _guard(run, "finish", lambda: run.finish(exit_code=exit_code))


def training_run_id(checkpoint) -> str | None:
    """The W&B run id the trainer stored in the train_summary.json of ``checkpoint``'s run (beside
    it, or one folder up for the pipeline's checkpoints/<model>/final/best.pt), or None."""
    import json

    for folder in (Path(checkpoint).parent, Path(checkpoint).parent.parent):
        try:
            return json.loads((folder / "train_summary.json").read_text()).get("wandb_id")
        except (OSError, ValueError):
            continue
    return None


def log_evaluation(cfg: Mapping, name: str, checkpoint, rows, images: Mapping) -> bool:
    """Log one model's evaluation into its training run (resumed by id; a new ``evaluate`` run when
    training was not tracked): every metric row as a summary value ``eval/<metric>[/<set>][/<estimator>]``,
    the rows as the table ``eval/metrics``, the accuracy rows as ``eval/classification`` and
    ``images`` (key -> PNG path) as ``wandb.Image`` s. ``rows``: rows (dicts or a DataFrame) in the
    layout of :func:`paper_figures.metrics.metrics_frame`."""
    if not enabled(cfg):
        return False
    import pandas as pd

    from paper_figures.metrics import COLUMNS

    rows = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=COLUMNS)
    run_id = training_run_id(checkpoint)
    run = open_run(cfg, name, job_type="train" if run_id else "evaluate", run_id=run_id)
    if run is None:
        return False
    summary = {}
    for _, r in rows.iterrows():
        key = "/".join(str(p) for p in ("eval", r["metric"], r["set"], r["estimator"]) if p is not None and p == p)
        summary[key] = float(r["value"]) if r["value"] is not None else None
    ok = log_summary(run, summary)
    tables = {"eval/metrics": rows}
    acc = rows[rows["metric"] == "accuracy"]
    if not acc.empty:
        tables["eval/classification"] = acc[["set", "estimator", "value", "ci_low", "ci_high", "n", "K"]]
    ok &= log_tables(run, tables)
    ok &= log_images(run, images)
    finish(run)
    return ok


# ----------------------------------------------------------------------------- offline run files
# run-<id>.wandb: a 7-byte header (":W&B", magic, version), then LevelDB log-format records
# (32 KiB blocks; each chunk: crc32 (4 bytes), length (2, little endian), type (1): full, first,
# middle, last) whose payloads are wandb_internal_pb2.Record protobufs.
BLOCK = 32768
#: fields of a logged table or image in the history (besides ``_type``)
MEDIA_FIELDS = {"artifact_path", "log_mode", "ncols", "nrows", "path", "sha256", "size", "format", "height",
                "width", "caption", "_latest_artifact_path"}
HEADER = 7


def offline_records(path) -> list:
    """Every protobuf Record of one .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, out, parts = HEADER, [], []
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        parts.append(chunk)
        if kind in (1, 4):  # full or last
            r = pb.Record()
            r.ParseFromString(b"".join(parts))
            out.append(r)
            parts = []
    return out


def offline_runs(wandb_dir) -> list[dict]:
    """One dict per offline run folder: id, job_type, group, name, summary {key: value}, the
    history's scalar keys, its media {key: type} (``table-file``, ``image-file``) and ``exited``
    (whether the session's exit record has been written: False for a session still running, or
    one whose file W&B's service has not finished writing)."""
    out = []
    def session_order(f):  # offline-run-<date>_<time>-<id>[-<n>]: a resumed session gets -1, -2, ...
        folder = Path(f).parent.name
        stamp, rest = folder[len("offline-run-"):].split("-", 1)
        resumed = rest.rsplit("-", 1)[1] if rest.count("-") else "0"
        return stamp, int(resumed) if resumed.isdigit() else 0

    for f in sorted(glob.glob(str(Path(wandb_dir) / "offline-run-*" / "run-*.wandb")), key=session_order):
        info = {"file": f, "summary": {}, "history_keys": set(), "media": {}, "exited": False}
        for r in offline_records(f):
            kind = r.WhichOneof("record_type")
            if kind == "exit":
                info["exited"] = True
            elif kind == "run":
                info.update(id=r.run.run_id, job_type=r.run.job_type, group=r.run.run_group, name=r.run.display_name)
            elif kind == "summary":
                for u in r.summary.update:
                    info["summary"][u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
            elif kind == "history":  # media (tables, images) arrive as <key>/_type, <key>/path, ...
                for i in r.history.item:
                    key = i.key or "/".join(i.nested_key)
                    if key.endswith("/_type"):
                        info["media"][key[:-len("/_type")]] = json.loads(i.value_json)
                    elif "/_" not in key and not key.rsplit("/", 1)[-1] in MEDIA_FIELDS:
                        info["history_keys"].add(key)
        out.append(info)
    return out


def missing_tracking(wandb_dir, run: str, models) -> list[str]:
    """What an offline run's W&B files lack: for every model ``<run>/<model>``, a training session
    with history and an evaluation with ``eval/`` summary values; and the ``<run>/summary`` run.
    Returns one line per gap ([] when complete)."""
    found = offline_runs(wandb_dir)
    gaps = []
    for m in models:
        mine = [r for r in found if r.get("name") == f"{run}/{m}"]
        if not any(r.get("job_type") == "train" and r["history_keys"] for r in mine):
            gaps.append(f"{run}/{m}: no training history")
        if not any(any(k.startswith("eval/") for k in r["summary"]) for r in mine):
            gaps.append(f"{run}/{m}: no evaluation (eval/* summary values)")
    if not any(r.get("name") == f"{run}/summary" and r["media"] for r in found):
        gaps.append(f"{run}/summary: no summary run with tables")
    return gaps
