"""Image transforms: resizing Lake's originals to binary images, centring ink, the dihedral maps.

- ``preprocess_105`` resizes one original 105x105 drawing (paper bright, ink dark) to a binary
  28x28 image. Measured (docs/data_gap.md): the 28x28 arrays are exactly the originals resampled
  with nearest-neighbour at the *corner-aligned* grid, i.e. array pixel (i, j) = original pixel
  (floor(i*105/28), floor(j*105/28)) -- the convention of ``torch.nn.functional.interpolate(
  mode="nearest")`` and OpenCV's INTER_NEAREST. ``preprocess_105`` reproduces this with PIL
  (``filter="nearest", align="corner"``, the defaults): each of the 5,840 drawings in
  images_background_small1/2 (4,840 distinct; Greek and Latin are in both) and each of the 800
  images in all_runs.zip equals an array image bit for bit. PIL's own default (centre-aligned)
  grid is offset by half an output pixel and agrees on only about 95% of pixels.
- ``center_ink`` moves each image's ink centroid to the image centre.
- ``dihedral`` / ``dihedral_inverse`` / ``augment_dihedral``: the 8 rotations and reflections.

Spelling: prose is British ("centre", "centring", "greyscale"); the public API keeps its
American names -- ``center_ink`` (``--center-ink``, config ``data.center_ink``), the
``align="center"`` value and ``LakeOriginals.gray``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .sets import IMAGE_SIZE, OmniglotSet

__all__ = [
    "FILTERS",
    "DEFAULT_FILTER",
    "DEFAULT_THRESHOLD",
    "DEFAULT_ALIGN",
    "preprocess_105",
    "center_ink",
    "dihedral",
    "dihedral_inverse",
    "augment_dihedral",
]

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
#: Defaults chosen by measurement (vhe.data.gap.choose_preprocessing; docs/data_gap.md).
DEFAULT_FILTER = "nearest"
DEFAULT_THRESHOLD = 0.5
DEFAULT_ALIGN = "corner"


# --------------------------------------------------------------------------- resizing the originals
def _to_pil_grey(img) -> Image.Image:
    if isinstance(img, Image.Image):
        return img.convert("L")
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"preprocess_105 expects a 2-D greyscale image, got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    else:
        a = a.astype(np.uint8)
    return Image.fromarray(a)  # 2-D uint8 -> mode "L"


def preprocess_105(
    img,
    size: int = IMAGE_SIZE,
    filter: str = DEFAULT_FILTER,
    threshold: float = DEFAULT_THRESHOLD,
    align: str = DEFAULT_ALIGN,
) -> np.ndarray:
    """Resize one original drawing (paper bright, ink dark) to a binary ``size`` x ``size`` image.

    img: PIL image (any mode) or 2-D array: uint8 0..255, float in [0, 1], or bool (True =
    paper, like PIL mode '1'). filter: a PIL resampling name (``FILTERS``). align: 'center'
    (PIL's grid: output pixel i covers input [i*s, (i+1)*s), s = W/size) or 'corner' (output
    pixel i centred on input coordinate i*s, e.g. nearest picks input pixel floor(i*s), as
    torch/OpenCV nearest do; done with PIL's ``box`` on a paper-padded copy).
    threshold: ink where 1 - intensity/255 > threshold (intensity after resampling).
    Returns uint8 (size, size) in {0, 1}, ink = 1.
    """
    key = filter.lower() if isinstance(filter, str) else filter
    if key not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {sorted(FILTERS)}")
    if align not in ("center", "corner"):
        raise ValueError(f"align must be 'center' or 'corner', got {align!r}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    im = _to_pil_grey(img)
    w, h = im.size
    if align == "corner":
        hx, hy = w / size / 2.0, h / size / 2.0
        pad = int(math.ceil(max(hx, hy))) + 1
        im = ImageOps.expand(im, border=pad, fill=255)
        box = (pad - hx, pad - hy, pad - hx + w, pad - hy + h)
        out = im.resize((size, size), FILTERS[key], box=box)
    else:
        out = im.resize((size, size), FILTERS[key])
    ink = 1.0 - np.asarray(out, dtype=np.float32) / 255.0
    return (ink > threshold).astype(np.uint8)


# --------------------------------------------------------------------------- centring
def center_ink(images: torch.Tensor) -> torch.Tensor:
    """Shift every image by whole pixels so that its ink centroid lies at the image centre.

    images: uint8 (N, 1, H, W) in {0, 1}, ink = 1. Returns a new uint8 tensor of the same shape:
    image n moved by (round((H-1)/2 - r_n), round((W-1)/2 - c_n)) pixels, where (r_n, c_n) is
    the mean (row, column) of its ink pixels; pixels moved in from outside are paper (0), ink
    moved past the border is dropped (``images.sum() - center_ink(images).sum()`` counts it).
    Images without ink are returned unchanged. Lake's modified-Hausdorff baseline centres its
    ink point sets the same way before comparing them.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"center_ink expects a uint8 tensor (N, 1, H, W), got {shape}")
    if images.dtype != torch.uint8:
        raise ValueError(f"center_ink expects uint8 images in {{0, 1}}, got dtype {images.dtype}")
    n, _, h, w = images.shape
    out = images.clone()
    if n == 0:
        return out
    ink = images[:, 0].to(torch.float64)
    mass = ink.sum(dim=(1, 2))
    rows = torch.arange(h, dtype=torch.float64)
    cols = torch.arange(w, dtype=torch.float64)
    safe = mass.clamp(min=1.0)
    r = (ink.sum(dim=2) * rows).sum(dim=1) / safe
    c = (ink.sum(dim=1) * cols).sum(dim=1) / safe
    dy = torch.where(mass > 0, torch.round((h - 1) / 2 - r), torch.zeros_like(r)).to(torch.int64)
    dx = torch.where(mass > 0, torch.round((w - 1) / 2 - c), torch.zeros_like(c)).to(torch.int64)
    # one padded copy per distinct shift (a few dozen), sliced back to (H, W)
    pad = int(max(dy.abs().max(), dx.abs().max()))
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    for sy, sx in torch.unique(torch.stack([dy, dx], dim=1), dim=0).tolist():
        sel = (dy == sy) & (dx == sx)
        out[sel] = padded[sel, :, pad - sy : pad - sy + h, pad - sx : pad - sx + w]
    return out


# --------------------------------------------------------------------------- dihedral group
def dihedral(images: torch.Tensor, k: int) -> torch.Tensor:
    """Apply element ``k`` (0..7) of the dihedral group D4 to the last two dims (..., H, W).

    k = 0..3: rotation by k*90 degrees counter-clockwise; k = 4..7: transpose, then rotation
    by (k-4)*90 degrees. k = 0 is the identity; k >= 4 are reflections (their own inverse).
    Returns a new tensor of the same dtype (shape (..., W, H) for odd/transposed cases).
    """
    if not (isinstance(k, int) and 0 <= k < 8):
        raise ValueError(f"dihedral: k must be an int in 0..7, got {k!r}")
    x = images.transpose(-2, -1) if k >= 4 else images
    return torch.rot90(x, k % 4, dims=(-2, -1)).contiguous()


def dihedral_inverse(k: int) -> int:
    """The group element that undoes ``dihedral(., k)``: rotations invert, reflections are involutions."""
    if not 0 <= k < 8:
        raise ValueError(f"dihedral_inverse: k must be in 0..7, got {k}")
    return (4 - k) % 4 if k < 4 else k


def augment_dihedral(s: OmniglotSet, new_alphabets: bool = True) -> OmniglotSet:
    """Add the 8 dihedral transforms of every character as new character classes (8C classes).

    Transform k of character c gets label k*C + c and name 'Alphabet/characterNN' (k = 0) or
    'Alphabet/characterNN@d<k>'; with ``new_alphabets`` each (alphabet, k) is also a new
    alphabet 'Alphabet@d<k>' (label k*A + a), so an alphabet's characters share one transform.
    Images uint8 (8N, 1, H, W), requires H == W.
    """
    if s.images.shape[-1] != s.images.shape[-2]:
        raise ValueError(f"augment_dihedral needs square images, got {tuple(s.images.shape[-2:])}")
    C, A = s.n_classes, s.n_alphabets
    suffix = lambda k: "" if k == 0 else f"@d{k}"  # noqa: E731
    return OmniglotSet(
        images=torch.cat([dihedral(s.images, k) for k in range(8)]),
        character=torch.cat([s.character + k * C for k in range(8)]),
        alphabet=torch.cat([s.alphabet + (k * A if new_alphabets else 0) for k in range(8)]),
        drawer=s.drawer.repeat(8),
        character_names=[n + suffix(k) for k in range(8) for n in s.character_names],
        alphabet_names=(
            [n + suffix(k) for k in range(8) for n in s.alphabet_names] if new_alphabets else list(s.alphabet_names)
        ),
        source=s.source + "+dihedral",
    )
