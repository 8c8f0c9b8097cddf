"""Every setting that comes from the environment, every project path, and the constants more
than one layer uses.

One place, so a newcomer finds them and no two copies drift apart. The environment variables
read here (and nowhere else in engine/, index/, demo/ or training/, apart from the Milvus token
in index/stores and Gradio's own GRADIO_TEMP_DIR in demo/inputs.py):

    TWIN_DATA           the shared face data (default: ../shared/data beside the project)
    TWIN_GALLERY        the gallery location for the app and `python -m index` (default
                        data/gallery): a folder (SQLite + FAISS), a *.db file (Milvus Lite) or
                        milvus://host:port/name
    TWIN_DEVICE         where the network runs: cpu, cuda, cuda:1 (default: CUDA when present)
    TWIN_CACHE_ROOT     derived caches (default .cache/ in the project, git-ignored)
    TWIN_CACHE          the training crop cache (default $TWIN_CACHE_ROOT/crops)
    TWIN_TEACHER_CACHE  the teacher's targets (default $TWIN_CACHE_ROOT/teacher)
    TWIN_GALLERY_SCOPE  whose gallery a visitor of the app sees: shared, session or user
                        (default: session when others can reach the app, else shared)
    SPACE_ID            set by Hugging Face Spaces: the app is public, so session scope by default

No imports beyond the standard library: every layer may read it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The project's root folder (the one holding engine/, configs/, bench/).
ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("TWIN_DATA", ROOT.parent / "shared" / "data"))
LFW_DIR = DATA_DIR / "lfw"
DEFAULT_GALLERY = os.environ.get("TWIN_GALLERY", "data/gallery")
#: The app's gallery scope from TWIN_GALLERY_SCOPE, or None (index.scopes.default_scope decides).
GALLERY_SCOPE = os.environ.get("TWIN_GALLERY_SCOPE", "").strip().lower() or None
#: True on a Hugging Face Space (which sets SPACE_ID): reachable by anyone.
ON_SPACE = bool(os.environ.get("SPACE_ID"))
#: A device name from TWIN_DEVICE, or None (engine.model.pick_device then prefers CUDA).
DEVICE = os.environ.get("TWIN_DEVICE") or None
CACHE_ROOT = Path(os.environ.get("TWIN_CACHE_ROOT", ROOT / ".cache"))
CROP_CACHE_DIR = Path(os.environ.get("TWIN_CACHE", CACHE_ROOT / "crops"))
TEACHER_DIR = Path(os.environ.get("TWIN_TEACHER_CACHE", CACHE_ROOT / "teacher"))

#: The shipped weights and their model card (twin.json beside them).
WEIGHTS_DIR = ROOT / "engine" / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "twin.pt"
MODEL_CARD = DEFAULT_WEIGHTS.with_suffix(".json")
#: Training recipes (one JSON file each), training runs (git-ignored), bench results.
CONFIGS_DIR = ROOT / "configs"
RUNS_DIR = ROOT / "runs"
RESULTS_DIR = ROOT / "bench" / "results"

#: The smallest face (box width, pixels) the detector reports, for the product and the crop cache.
MIN_FACE_SIZE = 20
