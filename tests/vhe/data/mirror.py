"""Where the data tests find the repository and the verified Omniglot mirror (VHE_DATA_MIRROR)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
MIRROR = (
    Path(os.environ["VHE_DATA_MIRROR"])
    if os.environ.get("VHE_DATA_MIRROR")
    else REPO.parent / "shared" / "data" / "omniglot"
)
