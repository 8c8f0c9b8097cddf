"""Every setting that comes from the environment, and the constants more than one layer uses.

One place, so a newcomer finds them and no two copies drift apart:

    TWIN_DATA      the shared face data (default: ../shared/data beside the project)
    TWIN_GALLERY   the gallery location for the app and `python -m index` (default data/gallery):
                   a folder (SQLite + FAISS), a *.db file (Milvus Lite) or milvus://host:port/name
    TWIN_CACHE     derived caches: aligned crops, teacher targets (default .cache/ in the project)

No imports beyond the standard library: every layer may read it.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("TWIN_DATA", ROOT.parent / "shared" / "data"))
LFW_DIR = DATA_DIR / "lfw"
DEFAULT_GALLERY = os.environ.get("TWIN_GALLERY", "data/gallery")
CACHE_ROOT = Path(os.environ.get("TWIN_CACHE_ROOT", ROOT / ".cache"))
#: The smallest face (box width, pixels) the detector reports, for the product and the crop cache.
MIN_FACE_SIZE = 20
