"""Data sources for the VHE reproduction: fetching, Omniglot readers, one-shot runs, textures.

All images are single-channel binary uint8 (N, 1, 28, 28) in {0, 1} with ink = 1.

Modules: ``fetch`` (checksummed, mirror-first downloads), ``archives`` (bounded archive and image
reads), ``sets`` (``OmniglotSet`` and set operations), ``readers`` (the npz arrays and Lake's
archives), ``transforms`` (resizing, ink centring, dihedral maps), ``runs`` (one-shot runs),
``textures`` (textured Omniglot), ``gap`` (the measured domain gap), ``cli``. ``omniglot``
re-exports the names of ``sets``, ``readers`` and ``transforms`` under their old module.
"""

import warnings as _warnings

# `python -m vhe.data.fetch` / `-m vhe.data.cli` import this package first; runpy then warns that the
# submodule is already imported. Harmless here (each CLI catches its own module's exceptions).
_warnings.filterwarnings(
    "ignore", message=r".*found in sys\.modules after import of package 'vhe\.data'", category=RuntimeWarning
)
from .fetch import (
    DataIntegrityError,
    DataUnavailableError,
    DEFAULT_MANIFEST,
    Entry,
    fetch,
    fetch_file,
    read_manifest,
    sha256sum,
)
from .gap import (
    Preprocessing,
    choose_preprocessing,
    default_candidates,
    image_stats,
    ink_fraction,
    matched_agreement,
    measure_domain_gap,
    stroke_thickness,
)
from .readers import LakeOriginals, load_lake_archive, load_npz_arrays, read_lake_originals
from .runs import OneShotRun, load_lake_runs, load_runs, save_runs, within_alphabet_runs
from .sets import OmniglotSet, check_k_shot, concat_sets, split_validation
from .textures import (
    TexturedSet,
    dilate_binary,
    dtd_archive_name,
    dtd_textures,
    fetch_dtd,
    load_texture_folder,
    procedural_textures,
    texture_catalogue,
    textured_omniglot,
)
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
    "DataIntegrityError",
    "DataUnavailableError",
    "DEFAULT_MANIFEST",
    "Entry",
    "fetch",
    "fetch_file",
    "read_manifest",
    "sha256sum",
    "Preprocessing",
    "choose_preprocessing",
    "default_candidates",
    "image_stats",
    "ink_fraction",
    "matched_agreement",
    "measure_domain_gap",
    "stroke_thickness",
    "DEFAULT_ALIGN",
    "DEFAULT_FILTER",
    "DEFAULT_THRESHOLD",
    "FILTERS",
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
    "preprocess_105",
    "read_lake_originals",
    "split_validation",
    "OneShotRun",
    "load_lake_runs",
    "load_runs",
    "save_runs",
    "within_alphabet_runs",
    "TexturedSet",
    "dilate_binary",
    "dtd_archive_name",
    "dtd_textures",
    "fetch_dtd",
    "load_texture_folder",
    "procedural_textures",
    "texture_catalogue",
    "textured_omniglot",
]
