"""Five-point face alignment: a similarity transform onto a fixed template.

scikit-image estimates the transform, Pillow applies it; the output is the canonical
112 x 112 crop every other part of the system (model, gallery thumbnails, UI) works from.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform

#: The widely used 112 x 112 five-point template (eyes, nose tip, mouth corners).
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
CROP_SIZE = 112
#: Bumped whenever the alignment's output changes, so caches of aligned crops are rebuilt.
ALIGNMENT_VERSION = "sim5-112-v1"


def template(size: int = CROP_SIZE) -> np.ndarray:
    """The template scaled to a square crop of `size` pixels."""
    return TEMPLATE_112 * (size / CROP_SIZE)


def estimate_transform(landmarks: np.ndarray, size: int = CROP_SIZE) -> SimilarityTransform:
    """The similarity transform mapping the photo's landmarks onto the template."""
    src = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    transform = SimilarityTransform.from_estimate(src, template(size).astype(np.float64))
    if not isinstance(transform, SimilarityTransform) or not transform:
        raise ValueError("degenerate landmarks: cannot estimate an alignment")
    return transform


def align(image: Image.Image, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp `image` so the five landmarks land on the template; returns size x size x 3 uint8."""
    transform = estimate_transform(landmarks, size)
    # A bilinear warp that shrinks by more than 2x aliases; shrink with a box filter first.
    factor = int(0.5 / transform.scale) if transform.scale < 0.25 else 1
    if factor >= 2:
        image = image.reduce(factor)
        transform = estimate_transform(np.asarray(landmarks, dtype=np.float64) / factor, size)
    inverse = np.linalg.inv(transform.params)  # Pillow wants output -> input coefficients
    coefficients = tuple(inverse[:2].reshape(-1))
    warped = image.transform(
        (size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)
    )
    return np.asarray(warped, dtype=np.uint8)
