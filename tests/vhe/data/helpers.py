"""Builders shared by the data tests (and tests/analysis): synthetic sets, images, archives, and the
Snakemake dry run of the data rules. Test modules import these public names from here, never
each other's helpers.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vhe.data.sets import OmniglotSet

from .mirror import MIRROR, REPO


needs_mirror = pytest.mark.skipif(
    not (MIRROR / "train_small.npz").is_file(),
    reason=f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)",
)


# --------------------------------------------------------------------------- files
def files_under(root: Path) -> set[str]:
    """Every path under ``root``, relative to it (to check that a failed command wrote nothing)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --------------------------------------------------------------------------- sets
def tiny_set(counts=(3, 2, 4), alphabets=(0, 0, 1), size=6, seed=0) -> OmniglotSet:
    """Random binary images: ``counts[c]`` images of character c, in alphabet ``alphabets[c]``."""
    g = torch.Generator().manual_seed(seed)
    char = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    return OmniglotSet(
        images=(torch.rand(len(char), 1, size, size, generator=g) > 0.5).to(torch.uint8),
        character=char,
        alphabet=torch.tensor([alphabets[c] for c in char.tolist()]),
        drawer=torch.cat([torch.arange(n) for n in counts]),
        character_names=[f"A{alphabets[c]}/character{c + 1:02d}" for c in range(len(counts))],
        alphabet_names=[f"A{a}" for a in sorted(set(alphabets))],
    )


def synthetic_chars(n_chars=6, n=4, seed=0) -> OmniglotSet:
    """``n_chars`` characters of one alphabet, ``n`` 28x28 drawings each (an 8x3 ink bar at a random place)."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n_chars * n, 1, 28, 28, dtype=torch.uint8)
    for i in range(len(imgs)):
        y, x = torch.randint(4, 18, (2,), generator=g).tolist()
        imgs[i, 0, y : y + 8, x : x + 3] = 1
    char = torch.arange(n_chars).repeat_interleave(n)
    return OmniglotSet(
        images=imgs,
        character=char,
        alphabet=torch.zeros_like(char),
        drawer=torch.arange(n).repeat(n_chars),
        character_names=[f"A/character{c:02d}" for c in range(n_chars)],
        alphabet_names=["A"],
    )


# --------------------------------------------------------------------------- images
def png_bytes(arr_u8: np.ndarray) -> bytes:
    """A 2-D uint8 array as a 1-bit PNG file's bytes (like Lake's originals)."""
    buf = io.BytesIO()
    Image.fromarray(arr_u8).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def drawing(seed: int) -> np.ndarray:
    """A 105x105 original-like drawing: paper 255 with one 20x10 ink (0) block at a random place."""
    rng = np.random.default_rng(seed)
    a = np.full((105, 105), 255, np.uint8)
    y, x = rng.integers(10, 80, 2)
    a[y : y + 20, x : x + 10] = 0
    return a


def bar_png(seed: int) -> bytes:
    """A 105x105 greyscale PNG with one vertical ink bar, ``seed`` pixels lower per seed."""
    a = np.full((105, 105), 255, np.uint8)
    a[10 + seed : 40 + seed, 20:30] = 0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` 8-bit grey pixels, with one tiny IDAT
    (the pixel data of a real image that size would be width*height bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- archives
def write_npz(path, arrays: dict):
    """``np.savez`` the arrays to ``path``; returns the path."""
    np.savez(path, **arrays)
    return path


def lake_zip(path: Path, extra: dict | None = None, chars=(("Alpha", "character01", 3), ("Beta", "character01", 2))):
    """An archive in Lake's layout ``root/<Alphabet>/<character>/<id>_<DD>.png`` (``drawing`` images),
    plus the members of ``extra``; returns the path."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("root/", "")
        i = 0
        for a, c, n in chars:
            z.writestr(f"root/{a}/{c}/", "")
            for d in range(n):
                z.writestr(f"root/{a}/{c}/0{i:03d}_{d + 1:02d}.png", png_bytes(drawing(i)))
                i += 1
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def runs_zip(path, labels=None, extra=None, n=3):
    """A one-run all_runs.zip: run01 with ``n`` training and ``n`` test images (``bar_png``),
    class_labels.txt from ``labels`` (default: item i answers class (i+1) % n + 1), plus the
    members of ``extra``; returns the path."""
    lines = (
        labels
        if labels is not None
        else [f"run01/test/item{i + 1:02d}.png run01/training/class{(i + 1) % n + 1:02d}.png" for i in range(n)]
    )
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            z.writestr(f"run01/training/class{i + 1:02d}.png", bar_png(i))
            z.writestr(f"run01/test/item{i + 1:02d}.png", bar_png(i + 3))
        z.writestr("run01/class_labels.txt", "\n".join(lines) + "\n")
        for k, v in (extra or {}).items():
            z.writestr(k, v)
    return path


def lie_about_size(path, member: str, declared: int) -> None:
    """Rewrite the uncompressed size of ``member`` in its local header and central directory entry."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        name_at = 30 if sig == b"PK\x03\x04" else 46
        i = raw.find(sig)
        while i >= 0 and raw[i + name_at : i + name_at + len(name)] != name:
            i = raw.find(sig, i + 1)
        assert i >= 0, f"no {sig!r} header for {member}"
        raw[i + size_at : i + size_at + 4] = struct.pack("<I", declared)
    path.write_bytes(bytes(raw))


# --------------------------------------------------------------------------- Snakemake rules (dry run)
needs_snakemake = pytest.mark.skipif(
    shutil.which("snakemake", path=str(Path(sys.executable).parent)) is None,
    reason="snakemake is not installed in this environment",
)


def data_dry_run(tmp_path, textures: str, run: str = "smoke") -> str:
    """`snakemake -n -p` of the real Snakefile for the data products only (rules/data.smk); its output."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"run: {run}\nseed: 0\ndata: {{mirror: null, max_characters: 10}}\ntextures: {textures}\n")
    targets = [
        f"resources/{run}/{k}.pt" for k in ("background", "evaluation", "lake_runs", "within_alphabet_runs", "textured")
    ] + [f"results/{run}/metrics/data_gap.json"]
    exe = Path(sys.executable).parent / "snakemake"
    r = subprocess.run(
        [
            str(exe),
            *targets,
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path / "work"),
            "-n",
            "-p",
            "--cores",
            "1",
            "--configfile",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    return out
