"""Omniglot data, by the names it has always had: a re-export of the modules that hold it.

``from vhe.data.omniglot import X`` keeps working for every public name; new code imports from
the module that holds the name (or from ``vhe.data``):

- ``vhe.data.sets``: ``OmniglotSet`` (container, save/load), ``concat_sets``, ``split_validation``,
  ``check_k_shot``, ``IMAGE_SIZE``;
- ``vhe.data.readers``: ``load_npz_arrays`` (the 28x28 arrays), ``load_lake_archive``,
  ``read_lake_originals``, ``LakeOriginals`` (Lake's 105x105 archives);
- ``vhe.data.transforms``: ``preprocess_105`` with ``FILTERS`` and the measured ``DEFAULT_*``,
  ``center_ink``, ``dihedral``, ``dihedral_inverse``, ``augment_dihedral``;
- ``vhe.data.archives``: ``open_zip``.
"""

from .archives import open_zip
from .readers import LakeOriginals, load_lake_archive, load_npz_arrays, read_lake_originals
from .sets import IMAGE_SIZE, OmniglotSet, check_k_shot, concat_sets, split_validation
from .transforms import (
    DEFAULT_ALIGN,
    DEFAULT_FILTER,
    DEFAULT_THRESHOLD,
    FILTERS,
    augment_dihedral,
    center_ink,
    dihedral,
    dihedral_inverse,
    preprocess_105,
)

__all__ = [
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
]
