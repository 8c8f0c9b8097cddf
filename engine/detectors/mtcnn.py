"""MTCNN (facenet-pytorch's networks and weights) behind engine.detect's Detector protocol.

MTCNN's three networks (and its weights) come from facenet-pytorch; its cascade is driven
here (`_cascade`), the same computation as `facenet_pytorch...detect_face` with two changes
that bound the work per photo: at most `max_candidates` boxes go from the first stage (PNet)
to the second (RNet), and at most `max_candidates // 4` from the second to the third (ONet),
the best scored first; and the crops each stage needs are cut and resized in batches of the
same size instead of one by one. Below those caps the boxes, scores and landmarks are those
of facenet-pytorch. With the detection view's bounded size (DETECTION_MAX_SIDE) and the
minimum face size fixing the image pyramid, a photo's detection cost is bounded whatever
it shows.

This module owns MTCNN's settings (the product's and the crop caches') and the quality
constants tuned on MTCNN's output; it turns MTCNN's output into typed `Detection`s, puts
the most prominent face first and maps coordinates back from the downsized detection view.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from time import monotonic

import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import (
    batched_nms_numpy,
    bbreg,
    generateBoundingBox,
    imresample,
    pad,
    rerec,
)
from PIL import Image
from torchvision.ops.boxes import batched_nms

from ..detect import Detection, QualityTuning, sort_by_prominence
from ..errors import TooMuchWork
from ..images import DETECTION_MAX_SIDE, detection_view
from ..settings import MIN_FACE_SIZE

#: Faces MTCNN scores below this are ignored (its own last stage stops at 0.7).
MIN_SCORE = 0.9
#: The crop caches (training.data, bench/quality.py) also take a face scored from this when
#: no face of the photo reaches MIN_SCORE: every training photo shows someone, and tight or
#: odd crops of them score lower.
CACHE_FALLBACK_SCORE = 0.5
#: The score each of MTCNN's three stages needs to pass a box on (facenet-pytorch's defaults).
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
#: At most this many candidate boxes per photo go from MTCNN's first stage to its second, and a
#: quarter of them to its third; the best scored are kept. Measured on 1024-pixel photos (tiled
#: LFW faces): 64 faces need 2,300 (and 490), 144 faces 4,000 (1,100), 576 faces 9,700 (4,100),
#: which took 20 s of CPU; an LFW photo needs about 40. With the cap, every face is still found
#: up to about 250 faces (540 of the 576), in a bounded time.
MAX_CANDIDATES = 4000
#: Names this detector's behaviour for caches of its results (bench/product_path.py): bump it
#: whenever a change to decoding, detection or its ordering could move a box or a landmark.
#: Settings (sizes, scores, thresholds) are part of such keys separately, so need no bump.
#: The training-set crop caches (training/data.py) are keyed by alignment and cache_key() only:
#: they detect on a black-padded canvas where boxes rarely pass the border, and rebuilding them
#: means rebuilding the teacher's targets (about an hour of CPU), so a bump leaves them as they are.
DETECTION_VERSION = "mtcnn-v3-visible-area"
#: engine.quality's constants that read MTCNN's output. score_ramp: the product keeps faces
#: from 0.9 (MIN_SCORE), so it only speaks for faces found with a laxer setting. frontal_nose:
#: where MTCNN's nose tip sits between the eye line (0) and the mouth line (1) on a frontal
#: face: the median over the validation photos (0.597; the 112 px template's own points give 0.49).
QUALITY = QualityTuning(score_ramp=(0.8, 0.95), frontal_nose=0.60)
#: Crops of one size are resized together in chunks of at most this many float32 values.
_CROP_CHUNK = 8_000_000


class MTCNNDetector:
    """MTCNN with our policy: a minimum face size and score, prominence order, batching.

    fallback_score: when set, a photo none of whose faces reaches min_score keeps its faces
    scored from fallback_score instead (the crop caches' setting, see for_crop_cache).
    """

    QUALITY = QUALITY

    def __init__(
        self,
        device: str | torch.device | None = None,
        min_face_size: int = MIN_FACE_SIZE,
        min_score: float = MIN_SCORE,
        max_side: int = DETECTION_MAX_SIDE,
        thresholds: Sequence[float] = STAGE_THRESHOLDS,
        max_candidates: int = MAX_CANDIDATES,
        fallback_score: float | None = None,
    ):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.max_side = max_side
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_candidates = int(max_candidates)
        self.fallback_score = fallback_score
        self.quality = QUALITY
        self._mtcnn = MTCNN(
            keep_all=True,
            min_face_size=min_face_size,
            thresholds=list(thresholds),
            device=self.device,
            post_process=False,
        )
        self._mtcnn.eval()
        # MTCNN keeps no state between calls, so threads may share it. On a CPU, separate
        # photos (the two of a compare()) are detected side by side, one per core.
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="detect")

    def describe(self) -> dict[str, object]:
        """What decides this detector's boxes: its version and settings (a cache key's content)."""
        return {
            "version": DETECTION_VERSION,
            "min_face_size": self.min_face_size,
            "min_score": self.min_score,
            "max_side": self.max_side,
            "thresholds": list(self.thresholds),
            "max_candidates": self.max_candidates,
            **({"fallback_score": self.fallback_score} if self.fallback_score is not None else {}),
        }

    @classmethod
    def for_crop_cache(cls, device: str | torch.device | None = "cpu") -> MTCNNDetector:
        """MTCNN as the crop caches run it: the product's settings, plus faces scored from
        CACHE_FALLBACK_SCORE when a photo has none from MIN_SCORE."""
        return cls(device=device, fallback_score=CACHE_FALLBACK_SCORE)

    @classmethod
    def crop_cache_key(cls) -> dict[str, object]:
        """for_crop_cache()'s settings as they key the training crop caches, in the form they
        were first written (training.data's former DETECTOR_POLICY): another key rebuilds an
        hour of crops and the teacher's targets."""
        return {
            "min_face_size": MIN_FACE_SIZE,
            "min_score": MIN_SCORE,
            "thresholds": STAGE_THRESHOLDS,
            "retry_score": CACHE_FALLBACK_SCORE,
        }

    def detect(self, image: Image.Image, deadline: float | None = None) -> list[Detection]:
        """All faces of one RGB image, most prominent first."""
        return self.detect_batch([image], deadline=deadline)[0]

    def detect_batch(self, images: Sequence[Image.Image], deadline: float | None = None) -> list[list[Detection]]:
        """Detect in many images; on a GPU, images of the same size share one MTCNN pass.

        On a CPU one pass per image is faster (measured: 24 ms vs 42 ms per LFW photo), since
        MTCNN's later stages then see fewer candidate boxes at once.

        deadline: a time.monotonic() value; when it has passed between two of MTCNN's stages,
        TooMuchWork is raised (the stages themselves are bounded: see MAX_CANDIDATES).
        """
        results: list[list[Detection]] = [[] for _ in images]
        views = [detection_view(image, self.max_side) for image in images]
        groups: dict[object, list[int]] = {}
        for i, (view, _) in enumerate(views):
            groups.setdefault(view.size if self.device.type == "cuda" else i, []).append(i)

        def check() -> None:
            if deadline is not None and monotonic() > deadline:
                raise TooMuchWork(None, photos=len(images))

        def run(indices: list[int]):
            batch = np.stack([np.asarray(views[i][0]) for i in indices])
            with torch.inference_mode():
                return indices, self._cascade(batch, check)

        jobs = list(groups.values())
        outputs = self._pool.map(run, jobs) if len(jobs) > 1 else map(run, jobs)
        for indices, (boxes, points) in outputs:
            for j, i in enumerate(indices):
                results[i] = self._to_detections(
                    boxes[j][:, :4], boxes[j][:, 4], points[j], views[i][1], images[i].size
                )
        return results

    # -- MTCNN's cascade, bounded ----------------------------------------------------------------
    def _cascade(self, images: np.ndarray, check: Callable[[], None]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """MTCNN on a batch of same-sized uint8 images (B x H x W x 3) -> per image: boxes
        (N x 5: x1, y1, x2, y2, score) and landmarks (N x 5 x 2), in the images' pixels.

        facenet_pytorch.models.utils.detect_face.detect_face, step for step, plus the caps on
        the boxes that reach RNet and ONet, batched crops, and `check` between stages.
        """
        check()
        mtcnn, device = self._mtcnn, self.device
        threshold = self.thresholds
        imgs = torch.as_tensor(images.copy(), device=device).permute(0, 3, 1, 2)
        imgs = imgs.type(next(mtcnn.pnet.parameters()).dtype)
        batch_size = len(imgs)
        h, w = imgs.shape[2:4]
        m = 12.0 / self.min_face_size
        minl = min(h, w) * m
        scale_i, scales = m, []
        while minl >= 12:
            scales.append(scale_i)
            scale_i *= mtcnn.factor
            minl *= mtcnn.factor

        # First stage: PNet over the pyramid
        boxes, image_inds, scale_picks, offset = [], [], [], 0
        for scale in scales:
            im_data = imresample(imgs, (int(h * scale + 1), int(w * scale + 1)))
            im_data = (im_data - 127.5) * 0.0078125
            reg, probs = mtcnn.pnet(_fast_layout(im_data))
            boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
            boxes.append(boxes_scale)
            image_inds.append(image_inds_scale)
            pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)
            scale_picks.append(pick + offset)
            offset += boxes_scale.shape[0]
        boxes = torch.cat(boxes, dim=0)
        image_inds = torch.cat(image_inds, dim=0)
        scale_picks = torch.cat(scale_picks, dim=0)
        boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        pick = _best_per_image(pick, boxes[:, 4], image_inds, self.max_candidates)
        boxes, image_inds = boxes[pick], image_inds[pick]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        qq1 = boxes[:, 0] + boxes[:, 5] * regw
        qq2 = boxes[:, 1] + boxes[:, 6] * regh
        qq3 = boxes[:, 2] + boxes[:, 7] * regw
        qq4 = boxes[:, 3] + boxes[:, 8] * regh
        boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
        boxes = rerec(boxes)
        check()

        # Second stage: RNet on 24 x 24 crops
        if len(boxes) > 0:
            boxes, image_inds, im_data = _crops(imgs, boxes, image_inds, 24, w, h)
        if len(boxes) > 0:
            out = _in_batches(mtcnn.rnet, (im_data - 127.5) * 0.0078125, check)
            out0 = out[0].permute(1, 0)
            out1 = out[1].permute(1, 0)
            score = out1[1, :]
            ipass = score > threshold[1]
            boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
            image_inds = image_inds[ipass]
            mv = out0[:, ipass].permute(1, 0)
            pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
            pick = _best_per_image(pick, boxes[:, 4], image_inds, max(1, self.max_candidates // 4))
            boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
            boxes = bbreg(boxes, mv)
            boxes = rerec(boxes)
        check()

        # Third stage: ONet on 48 x 48 crops: scores, boxes and landmarks
        points = torch.zeros(0, 5, 2, device=device)
        if len(boxes) > 0:
            boxes, image_inds, im_data = _crops(imgs, boxes, image_inds, 48, w, h)
        if len(boxes) > 0:
            out = _in_batches(mtcnn.onet, (im_data - 127.5) * 0.0078125, check)
            out0 = out[0].permute(1, 0)
            out1 = out[1].permute(1, 0)
            out2 = out[2].permute(1, 0)
            score = out2[1, :]
            points = out1
            ipass = score > threshold[2]
            points = points[:, ipass]
            boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
            image_inds = image_inds[ipass]
            mv = out0[:, ipass].permute(1, 0)
            w_i = boxes[:, 2] - boxes[:, 0] + 1
            h_i = boxes[:, 3] - boxes[:, 1] + 1
            points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
            points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
            points = torch.stack((points_x, points_y)).permute(2, 1, 0)
            boxes = bbreg(boxes, mv)
            pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
            boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

        boxes = boxes.cpu().numpy().reshape(-1, 5)
        points = points.cpu().numpy().reshape(-1, 5, 2)
        image_inds = image_inds.cpu().numpy()
        return (
            [boxes[image_inds == b].copy() for b in range(batch_size)],
            [points[image_inds == b].copy() for b in range(batch_size)],
        )

    def _to_detections(self, boxes, scores, points, scale: float, size: tuple[int, int]) -> list[Detection]:
        if len(boxes) == 0:
            return []
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2) * scale
        usable = (
            ((boxes[:, 2] - boxes[:, 0]) >= self.min_face_size)
            & np.isfinite(boxes).all(axis=1)
            & np.isfinite(points).all(axis=(1, 2))
        )
        keep = usable & (scores >= self.min_score)
        if self.fallback_score is not None and not keep.any():
            keep = usable & (scores >= self.fallback_score)
        detections = [Detection(boxes[i], float(scores[i]), points[i]) for i in np.flatnonzero(keep)]
        return sort_by_prominence(detections, size)


def _best_per_image(pick: torch.Tensor, scores: torch.Tensor, image_inds: torch.Tensor, limit: int) -> torch.Tensor:
    """`pick` (indices, as NMS returns them: best score first) cut to `limit` per image."""
    if len(pick) <= limit:
        return pick
    inds = image_inds[pick]
    keep = torch.zeros(len(pick), dtype=torch.bool, device=pick.device)
    for b in torch.unique(inds):
        members = torch.nonzero(inds == b).flatten()
        order = torch.argsort(scores[pick[members]], descending=True, stable=True)
        keep[members[order[:limit]]] = True
    return pick[keep]


def _crops(imgs: torch.Tensor, boxes: torch.Tensor, image_inds: torch.Tensor, size: int, w: int, h: int):
    """Each box's pixels resized to size x size ("area" interpolation, as facenet-pytorch does).

    Returns the boxes (and their image indices) that hold at least one pixel of the image, and
    their crops. Crops of the same size are resized together: the same arithmetic as one by one.
    """
    y, ey, x, ex = pad(boxes, w, h)
    valid = np.flatnonzero((ey > y - 1) & (ex > x - 1))
    if len(valid) < len(y):
        keep = torch.as_tensor(valid, dtype=torch.long, device=boxes.device)
        boxes, image_inds = boxes[keep], image_inds[keep]
        y, ey, x, ex = y[valid], ey[valid], x[valid], ex[valid]
    out = torch.empty((len(y), imgs.shape[1], size, size), dtype=imgs.dtype, device=imgs.device)
    heights, widths = ey - y + 1, ex - x + 1
    pixels = imgs.permute(0, 2, 3, 1)  # B x H x W x C: one gather per crop
    inds = image_inds.cpu().numpy()
    shapes = np.stack([heights, widths], axis=1)
    for shape in np.unique(shapes, axis=0):
        members = np.flatnonzero((shapes == shape).all(axis=1))
        ch, cw = int(shape[0]), int(shape[1])
        step = max(1, _CROP_CHUNK // (ch * cw * imgs.shape[1]))
        for start in range(0, len(members), step):
            part = members[start : start + step]
            rows = torch.as_tensor(y[part, None] - 1 + np.arange(ch), device=imgs.device)
            cols = torch.as_tensor(x[part, None] - 1 + np.arange(cw), device=imgs.device)
            which = torch.as_tensor(inds[part], device=imgs.device)
            crop = pixels[which[:, None, None], rows[:, :, None], cols[:, None, :]]  # n x ch x cw x C
            out[torch.as_tensor(part, device=imgs.device)] = imresample(crop.permute(0, 3, 1, 2), (size, size))
    return boxes, image_inds, out


def _fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last on a CPU: the same numbers (to ~1e-5 px in the boxes), but torch's CPU
    max-pooling, which MTCNN's three networks spend most of their time in, runs ~8x faster on
    it (measured: one photo's detection 50 -> 35 ms, one thread)."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def _in_batches(
    model: torch.nn.Module, data: torch.Tensor, check: Callable[[], None], batch_size: int = 512
) -> tuple[torch.Tensor, ...]:
    outputs = []
    for start in range(0, len(data), batch_size):
        if start:
            check()
        outputs.append(model(_fast_layout(data[start : start + batch_size])))
    return tuple(torch.cat(v, dim=0) for v in zip(*outputs))
