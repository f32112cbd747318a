"""Data preparation command lines (called by rules/data.smk).

    python -m vhe.data.cli prepare-omniglot --npz train_small.npz --out background.pt [--max-characters K] [--dihedral] [--center-ink]
    python -m vhe.data.cli prepare-lake --zip images_background_small1.zip --out lake.pt [--max-characters K]
    python -m vhe.data.cli prepare-runs --zip all_runs.zip --out lake_runs.pt [--center-ink]
    python -m vhe.data.cli within-alphabet-runs --set evaluation.pt --out runs.pt --n-runs 20 --n-way 20 --seed 0 [--max-characters K]
    python -m vhe.data.cli fetch-dtd --dest resources/raw [--mirror DIR] [--no-download]
    python -m vhe.data.cli textured --set background.pt --out textured.pt --n-textures 8 --n-per-character 4 --seed 0
        [--dilate 1] [--dtd dtd-r1.0.1.tar.gz | --texture-folder DIR_OR_ZIP] [--max-characters K]
    python -m vhe.data.cli gap --npz train_small.npz --lake-zip a.zip --lake-zip b.zip --out gap.json [--max-characters K] [--quick]

``--max-characters K`` keeps the first K characters in sorted (alphabet, character) order
(smoke runs). ``--center-ink`` moves each 28x28 image's ink centroid to the image centre
(``vhe.data.center_ink``; config key ``data.center_ink``). Every command prints a one-line
summary and exits 1 with a message on error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from ..files import write_json
from .fetch import DataIntegrityError, DataUnavailableError
from .gap import Preprocessing, choose_preprocessing, default_candidates, measure_domain_gap
from .readers import load_lake_archive, load_npz_arrays
from .sets import OmniglotSet, concat_sets
from .runs import load_lake_runs, save_runs, within_alphabet_runs
from .textures import dtd_textures, fetch_dtd, load_texture_folder, procedural_textures, textured_omniglot
from .transforms import DEFAULT_ALIGN, DEFAULT_FILTER, DEFAULT_THRESHOLD, augment_dihedral, center_ink

log = logging.getLogger("vhe.data.cli")


def _ink(tensors) -> int:
    """Ink pixels in uint8 {0, 1} images."""
    return sum(int(t.sum()) for t in tensors)


def _centring_note(before: int, after: int, what: str) -> str:
    """Summary of ``center_ink``: the ink pixels it pushed past the border."""
    return f"; {what} ink centred ({before - after} of {before} ink pixels moved past the border)"


def _prepare_omniglot(a) -> str:
    s = load_npz_arrays(a.npz, max_characters=a.max_characters)
    note = ""
    if a.center_ink:
        images = center_ink(s.images)
        note = _centring_note(_ink([s.images]), _ink([images]), "every image's")
        s = dataclasses.replace(s, images=images, source=s.source + "+centred")
    if a.dihedral:
        s = augment_dihedral(s)
    s.save(a.out)
    return f"{a.out}: {len(s)} images, {s.n_classes} characters, {s.n_alphabets} alphabets{note}"


def _prepare_lake(a) -> str:
    s = load_lake_archive(a.zip, filter=a.filter, threshold=a.threshold, align=a.align, max_characters=a.max_characters)
    s.save(a.out)
    return f"{a.out}: {len(s)} images, {s.n_classes} characters, {s.n_alphabets} alphabets"


def _prepare_runs(a) -> str:
    runs = load_lake_runs(a.zip)
    note = ""
    if a.center_ink:
        before = _ink(t for r in runs for t in (r.support, r.query))
        runs = [dataclasses.replace(r, support=center_ink(r.support), query=center_ink(r.query)) for r in runs]
        note = _centring_note(before, _ink(t for r in runs for t in (r.support, r.query)), "every 28x28 image's")
    save_runs(runs, a.out)
    return f"{a.out}: {len(runs)} runs of {runs[0].n_way}-way one-shot{note}"


def _within(a) -> str:
    s = OmniglotSet.load(a.set).first_characters(a.max_characters)
    runs = within_alphabet_runs(s, n_runs=a.n_runs, n_way=a.n_way, seed=a.seed)
    save_runs(runs, a.out)
    return f"{a.out}: {len(runs)} within-alphabet runs of {a.n_way}-way one-shot from {len(set(r.alphabet for r in runs))} alphabets"


def _textured(a) -> str:
    s = OmniglotSet.load(a.set).first_characters(a.max_characters)
    if a.dtd:
        tex, names = dtd_textures(a.dtd, a.n_textures, size=a.texture_size)
    elif a.texture_folder:
        tex, names = load_texture_folder(a.texture_folder, size=a.texture_size)
        tex, names = tex[: a.n_textures], names[: a.n_textures]
    else:
        tex, names = procedural_textures(a.n_textures, size=a.texture_size, seed=a.seed, return_names=True)
    t = textured_omniglot(s, tex, a.n_per_character, seed=a.seed, dilate=a.dilate, texture_names=names)
    t.save(a.out)
    return f"{a.out}: {len(t)} images, {t.n_classes} characters x {t.n_textures} textures"


def _fetch_dtd(a) -> str:
    return str(fetch_dtd(a.dest, mirror=a.mirror, download=not a.no_download))


def _gap(a) -> str:
    arrays = load_npz_arrays(a.npz)
    if a.quick:
        cands = [
            Preprocessing(DEFAULT_FILTER, DEFAULT_THRESHOLD, DEFAULT_ALIGN),
            Preprocessing("bilinear", 0.5, "center"),
        ]
    else:
        cands = default_candidates()
    choice = choose_preprocessing(arrays, a.lake_zip, cands, max_characters=a.max_characters)
    default = {"filter": DEFAULT_FILTER, "threshold": DEFAULT_THRESHOLD, "align": DEFAULT_ALIGN}
    lake = concat_sets([load_lake_archive(z, max_characters=a.max_characters) for z in a.lake_zip])
    out = {
        "definitions": {
            "ink_fraction": "mean over images of (ink pixels / pixels), 28x28",
            "thickness": "mean over inked images of 2*A/P px: A ink pixels, P 4-neighbour ink/paper edges "
            "(border = paper)",
            "pixel_agreement": "mean over resized originals of the best fraction of equal pixels among the "
            "array images of the same character",
        },
        "npz": str(a.npz),
        "lake_zips": [str(z) for z in a.lake_zip],
        "max_characters": a.max_characters,
        "default_preprocessing": default,
        "chosen_preprocessing": choice["best"],
        "default_matches_choice": choice["best"] == default,
        "gap_with_default": measure_domain_gap(arrays, lake),
        "candidates": choice["results"],
    }
    write_json(out, a.out)  # atomically: a killed job leaves no partial data_gap.json
    g = out["gap_with_default"]
    return (
        f"{a.out}: chosen {choice['best']}; with the default, ink {g['lake']['ink_fraction']:.4f} vs "
        f"{(g['arrays_matched'] or g['arrays'])['ink_fraction']:.4f}, pixel agreement "
        f"{g['matched']['pixel_agreement']}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per data product."""
    p = argparse.ArgumentParser(prog="python -m vhe.data.cli", description="Prepare the project's data files.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--out", required=True, help="output file")
        sp.add_argument(
            "--max-characters", type=int, default=None, help="keep the first K characters in sorted order (smoke runs)"
        )
        return sp

    sp = common(sub.add_parser("prepare-omniglot", help="28x28 npz arrays -> OmniglotSet .pt"))
    sp.add_argument("--npz", required=True)
    sp.add_argument("--dihedral", action="store_true", help="add the 8 dihedral transforms as new classes")
    sp.add_argument("--center-ink", action="store_true", help="move each image's ink centroid to the centre")
    sp.set_defaults(func=_prepare_omniglot)

    sp = common(sub.add_parser("prepare-lake", help="Lake's 105x105 archive -> OmniglotSet .pt"))
    sp.add_argument("--zip", required=True)
    sp.add_argument("--filter", default=DEFAULT_FILTER)
    sp.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    sp.add_argument("--align", default=DEFAULT_ALIGN, choices=["center", "corner"])
    sp.set_defaults(func=_prepare_lake)

    sp = sub.add_parser("prepare-runs", help="Lake's all_runs.zip -> one-shot runs .pt")
    sp.add_argument("--zip", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument(
        "--center-ink",
        action="store_true",
        help="move each 28x28 image's ink centroid to the centre (the 105x105 originals stay as they are)",
    )
    sp.set_defaults(func=_prepare_runs)

    sp = common(sub.add_parser("within-alphabet-runs", help="in-distribution runs from an OmniglotSet .pt"))
    sp.add_argument("--set", required=True)
    sp.add_argument("--n-runs", type=int, default=20)
    sp.add_argument("--n-way", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=_within)

    sp = common(sub.add_parser("textured", help="textured Omniglot from an OmniglotSet .pt"))
    sp.add_argument("--set", required=True)
    sp.add_argument("--n-textures", type=int, required=True)
    sp.add_argument("--n-per-character", type=int, required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--dilate", type=int, default=1, help="dilate each drawing by this many pixels")
    sp.add_argument("--texture-size", type=int, default=28, help="texture tile size (px)")
    src = sp.add_mutually_exclusive_group()
    src.add_argument(
        "--dtd", default=None, help="torchvision's DTD archive dtd-r1.0.1.tar.gz (md5-verified; one image per category)"
    )
    src.add_argument(
        "--texture-folder", default=None, help="folder, zip or tar of texture images (default: procedural)"
    )
    sp.set_defaults(func=_textured)

    sp = sub.add_parser("fetch-dtd", help="torchvision's DTD archive: existing file, mirror, else download (md5)")
    sp.add_argument("--dest", default="resources/raw", help="destination folder (default: resources/raw)")
    sp.add_argument("--mirror", default=None, help="mirror folder (default: $VHE_DATA_MIRROR if set)")
    sp.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    sp.set_defaults(func=_fetch_dtd)

    sp = common(sub.add_parser("gap", help="measure the arrays-vs-originals domain gap -> JSON"))
    sp.add_argument("--npz", required=True)
    sp.add_argument("--lake-zip", action="append", required=True, help="repeat for several archives")
    sp.add_argument("--quick", action="store_true", help="only the default and PIL's bilinear recipe")
    sp.set_defaults(func=_gap)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; returns the exit status."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(a.func(a))
    except (DataIntegrityError, DataUnavailableError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
