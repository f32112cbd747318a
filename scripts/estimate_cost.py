#!/usr/bin/env python
"""The cost estimate of a pipeline run: kept for old commands; it is ``vhe-estimate``
(``python -m pipeline.estimate``, see there)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.estimate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
