"""vhe.data.omniglot (the old module: a re-export of sets, readers and transforms) and
`vhe.data.cli prepare-omniglot`, which chains the npz reader, ink centring and the dihedral maps."""

import torch

import vhe.data
from vhe.data import archives, cli, omniglot, readers, sets, transforms
from vhe.data.omniglot import OmniglotSet, center_ink

from .helpers import needs_mirror
from .mirror import MIRROR


# --------------------------------------------------------------------------- the old module's names
def test_old_module_reexports_every_public_name():
    """`from vhe.data.omniglot import X` gives the very object of X's new module, as `from vhe.data import X` does."""
    homes = (sets, readers, transforms, archives)
    assert set(omniglot.__all__) == {
        "DEFAULT_ALIGN",
        "DEFAULT_FILTER",
        "DEFAULT_THRESHOLD",
        "FILTERS",
        "IMAGE_SIZE",
        "LakeOriginals",
        "OmniglotSet",
        "augment_dihedral",
        "center_ink",
        "check_k_shot",
        "concat_sets",
        "dihedral",
        "dihedral_inverse",
        "load_lake_archive",
        "load_npz_arrays",
        "open_zip",
        "preprocess_105",
        "read_lake_originals",
        "split_validation",
    }
    for name in omniglot.__all__:
        owners = [m for m in homes if name in getattr(m, "__all__", ())]
        assert len(owners) == 1, (name, owners)
        assert getattr(omniglot, name) is getattr(owners[0], name), name
        if name in vhe.data.__all__:
            assert getattr(vhe.data, name) is getattr(omniglot, name), name


# --------------------------------------------------------------------------- CLI
@needs_mirror
def test_cli_prepare_omniglot(tmp_path):
    out = tmp_path / "bg.pt"
    assert (
        cli.main(
            [
                "prepare-omniglot",
                "--npz",
                str(MIRROR / "train_small.npz"),
                "--out",
                str(out),
                "--max-characters",
                "7",
                "--dihedral",
            ]
        )
        == 0
    )
    s = OmniglotSet.load(out)
    assert s.n_classes == 56 and len(s) == 8 * 7 * 20
    centred = tmp_path / "bg_centred.pt"
    assert (
        cli.main(
            [
                "prepare-omniglot",
                "--npz",
                str(MIRROR / "train_small.npz"),
                "--out",
                str(centred),
                "--max-characters",
                "7",
                "--center-ink",
            ]
        )
        == 0
    )
    c = OmniglotSet.load(centred)
    plain = s.images[: len(c)]  # dihedral transform 0 comes first: the arrays as published
    assert len(c) == 7 * 20 and torch.equal(c.images, center_ink(plain)) and not torch.equal(c.images, plain)
    assert "centred" in c.source


def test_cli_reports_errors(tmp_path, capsys):
    assert cli.main(["prepare-omniglot", "--npz", str(tmp_path / "no.npz"), "--out", str(tmp_path / "o.pt")]) == 1
    assert "no.npz" in capsys.readouterr().err
