"""Read the records of W&B offline run files (``run-<id>.wandb``) for the tests.

The file is a 7-byte header (``:W&B``, magic, version) followed by LevelDB log-format records
(32 KiB blocks; each chunk: crc32 (4 bytes), length (2, little endian), type (1): full, first,
middle, last) whose payloads are ``wandb_internal_pb2.Record`` protobufs.
"""
from __future__ import annotations

import glob
import json
import struct
from pathlib import Path

BLOCK = 32768
#: fields of a logged table or image in the history (besides ``_type``)
MEDIA_FIELDS = {"artifact_path", "log_mode", "ncols", "nrows", "path", "sha256", "size", "format", "height",
                "width", "caption", "_latest_artifact_path"}
HEADER = 7


def records(path) -> list:
    """Every protobuf Record of one .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
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


def runs(wandb_dir) -> list[dict]:
    """One dict per offline run folder: id, job_type, group, name, summary {key: value}, the
    history's scalar keys and its media {key: type} (``table-file``, ``image-file``)."""
    out = []
    for f in sorted(glob.glob(str(Path(wandb_dir) / "offline-run-*" / "run-*.wandb"))):
        info = {"file": f, "summary": {}, "history_keys": set(), "media": {}}
        for r in records(f):
            kind = r.WhichOneof("record_type")
            if kind == "run":
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
