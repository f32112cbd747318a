"""vhe.data.gap: definitions, and the measured domain gap pinned on the mirror (see docs/data_gap.md).

If a change to the preprocessing (vhe.data.transforms.preprocess_105 defaults) or to the metric
definitions moves these numbers, update docs/data_gap.md together with the pins.
"""

import json

import pytest
import torch

from vhe.data import cli
from vhe.data.gap import (
    Preprocessing,
    choose_preprocessing,
    default_candidates,
    image_stats,
    ink_fraction,
    matched_agreement,
    measure_domain_gap,
    stroke_thickness,
)
from vhe.data.readers import load_npz_arrays, read_lake_originals
from vhe.data.sets import concat_sets
from vhe.data.transforms import DEFAULT_ALIGN, DEFAULT_FILTER, DEFAULT_THRESHOLD

from .mirror import MIRROR

ZIPS = ["images_background_small1.zip", "images_background_small2.zip"]
REL = 1e-3

# measured on the mirror (docs/data_gap.md)
PINNED = {
    "arrays_all": {"n_images": 19280, "ink_fraction": 0.0779525, "thickness": 1.1845726},
    "arrays_matched": {"n_images": 4840, "ink_fraction": 0.0801864, "thickness": 1.1799818},
    # nearest / corner-aligned / 0.5 (the default): identical to the arrays
    "default": {"ink_fraction": 0.0801864, "thickness": 1.1799818, "pixel_agreement": 1.0, "exact_fraction": 1.0},
    # PIL's usual recipe (bilinear, centre-aligned, 0.5)
    "pil_bilinear": {
        "ink_fraction": 0.0804312,
        "thickness": 1.2121941,
        "pixel_agreement": 0.9494629,
        "exact_fraction": 0.0002066,
    },
    "pil_nearest": {"ink_fraction": 0.0808486, "thickness": 1.1875650, "pixel_agreement": 0.9479760},
}


@pytest.fixture(scope="module")
def sources():
    if not all((MIRROR / f).is_file() for f in ["train_small.npz", *ZIPS]):
        pytest.skip(f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)")
    arrays = load_npz_arrays(MIRROR / "train_small.npz")
    originals = [read_lake_originals(MIRROR / z) for z in ZIPS]
    return arrays, originals


def _lake(originals, **kw):
    return concat_sets([o.resize(**kw) for o in originals], dedupe=True)


# --------------------------------------------------------------------------- definitions
def test_definitions_on_synthetic_images():
    x = torch.zeros(3, 10, 10, dtype=torch.uint8)
    x[0, 2:4, 1:9] = 1  # 2 px wide, 8 px long bar: A = 16, P = 2*8 + 2*2 = 20 -> 2A/P = 1.6
    x[1, 0:10, 0:10] = 1  # whole image: A = 100, P = 40 (border counts as paper) -> 5
    assert torch.allclose(stroke_thickness(x)[:2], torch.tensor([1.6, 5.0], dtype=torch.float64))
    assert torch.isnan(stroke_thickness(x)[2])
    assert torch.allclose(ink_fraction(x), torch.tensor([0.16, 1.0, 0.0], dtype=torch.float64))
    assert stroke_thickness(x[None]).shape == (1, 3)


def test_matched_agreement_synthetic():
    from vhe.data.sets import OmniglotSet

    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand(6, 1, 4, 4, generator=g) > 0.5).to(torch.uint8)
    a = OmniglotSet(
        imgs,
        torch.tensor([0, 0, 0, 1, 1, 1]),
        torch.zeros(6, dtype=torch.int64),
        torch.arange(6) % 3,
        ["X/c1", "X/c2"],
        ["X"],
    )
    b = a.subset(torch.tensor([2, 1, 0]))  # same images, another order
    m = matched_agreement(a, b)
    assert m["pixel_agreement"] == 1.0 and m["exact_fraction"] == 1.0 and m["n_characters"] == 1
    flipped = b.subset(torch.arange(3))
    flipped.images = 1 - flipped.images
    assert matched_agreement(a, flipped)["pixel_agreement"] < 1.0


# --------------------------------------------------------------------------- pinned numbers on the mirror
def test_arrays_stats_pinned(sources):
    arrays, _ = sources
    s = image_stats(arrays)
    assert s["n_images"] == PINNED["arrays_all"]["n_images"]
    assert s["ink_fraction"] == pytest.approx(PINNED["arrays_all"]["ink_fraction"], rel=REL)
    assert s["thickness"] == pytest.approx(PINNED["arrays_all"]["thickness"], rel=REL)


def test_default_preprocessing_reproduces_arrays(sources):
    arrays, originals = sources
    assert (DEFAULT_FILTER, DEFAULT_THRESHOLD, DEFAULT_ALIGN) == ("nearest", 0.5, "corner")
    gap = measure_domain_gap(arrays, _lake(originals))
    assert gap["matched"]["n_characters"] == 242 and gap["matched"]["n_images"] == 4840
    assert gap["arrays_matched"]["n_images"] == PINNED["arrays_matched"]["n_images"]
    for k in ("ink_fraction", "thickness"):
        assert gap["arrays_matched"][k] == pytest.approx(PINNED["arrays_matched"][k], rel=REL)
        assert gap["lake"][k] == pytest.approx(PINNED["default"][k], rel=REL)
    assert gap["matched"]["pixel_agreement"] == 1.0 and gap["matched"]["exact_fraction"] == 1.0
    assert abs(gap["ink_fraction_rel_diff"]) < 1e-9 and abs(gap["thickness_rel_diff"]) < 1e-9


@pytest.mark.parametrize(
    "key, kw",
    [
        ("pil_bilinear", dict(filter="bilinear", threshold=0.5, align="center")),
        ("pil_nearest", dict(filter="nearest", threshold=0.5, align="center")),
    ],
)
def test_pil_default_grid_gap_pinned(sources, key, kw):
    arrays, originals = sources
    gap = measure_domain_gap(arrays, _lake(originals, **kw))
    for k in ("ink_fraction", "thickness"):
        assert gap["lake"][k] == pytest.approx(PINNED[key][k], rel=REL)
    assert gap["matched"]["pixel_agreement"] == pytest.approx(PINNED[key]["pixel_agreement"], rel=REL)


def test_choose_preprocessing_picks_the_default(sources):
    arrays, _ = sources
    cands = [
        Preprocessing("bilinear", 0.5, "center"),
        Preprocessing("hamming", 0.5, "corner"),
        Preprocessing("nearest", 0.5, "center"),
        Preprocessing("nearest", 0.5, "corner"),
        Preprocessing("lanczos", 0.6, "corner"),
    ]
    out = choose_preprocessing(arrays, [MIRROR / z for z in ZIPS], cands, max_characters=15)
    assert out["best"] == {"filter": "nearest", "threshold": 0.5, "align": "corner"}
    assert [r["score"] for r in out["results"]] == sorted(r["score"] for r in out["results"])
    assert len(default_candidates()) == 2 * (1 + 5 * 5)


def test_cli_gap_quick(tmp_path, sources):
    out = tmp_path / "m" / "gap.json"
    assert (
        cli.main(
            [
                "gap",
                "--npz",
                str(MIRROR / "train_small.npz"),
                "--lake-zip",
                str(MIRROR / ZIPS[0]),
                "--lake-zip",
                str(MIRROR / ZIPS[1]),
                "--out",
                str(out),
                "--max-characters",
                "5",
                "--quick",
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert d["chosen_preprocessing"] == d["default_preprocessing"] and d["default_matches_choice"]
    assert d["gap_with_default"]["matched"]["pixel_agreement"] == 1.0
    assert {"ink_fraction", "thickness", "pixel_agreement"} <= set(d["definitions"])
