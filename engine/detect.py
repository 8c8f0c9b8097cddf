"""Face detection with facenet-pytorch's MTCNN: boxes, scores and five landmarks per face.

MTCNN's three networks (and its weights) come from facenet-pytorch; its cascade is driven
here (`_cascade`), the same computation as `facenet_pytorch...detect_face` with two changes
that bound the work per photo: at most `max_candidates` boxes go from the first stage (PNet)
to the second (RNet), and at most `max_candidates // 4` from the second to the third (ONet),
the best scored first; and the crops each stage needs are cut and resized in batches of the
same size instead of one by one. Below those caps the boxes, scores and landmarks are those
of facenet-pytorch. With the detection view's bounded size (DETECTION_MAX_SIDE) and the
minimum face size fixing the image pyramid, a photo's detection cost is bounded whatever
it shows.

This module turns MTCNN's output into typed `Detection`s, puts the most prominent face
first and maps coordinates back from the downsized detection view.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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

from .errors import TooMuchWork
from .images import DETECTION_MAX_SIDE, detection_view

#: The smallest face, in pixels of the original photo, that we try to find and use.
from .settings import MIN_FACE_SIZE  # noqa: E402,F401  (re-exported: engine.detect.MIN_FACE_SIZE)

#: Faces MTCNN scores below this are ignored (its own last stage stops at 0.7).
MIN_SCORE = 0.9
#: At most this many candidate boxes per photo go from MTCNN's first stage to its second, and a
#: quarter of them to its third; the best scored are kept. Measured on 1024-pixel photos (tiled
#: LFW faces): 64 faces need 2,300 (and 490), 144 faces 4,000 (1,100), 576 faces 9,700 (4,100),
#: which took 20 s of CPU; an LFW photo needs about 40. With the cap, every face is still found
#: up to about 250 faces (540 of the 576), in a bounded time.
MAX_CANDIDATES = 4000
#: Names this detector's behaviour for caches of its results (bench/product_path.py): bump it
#: whenever a change to decoding, detection or its ordering could move a box or a landmark.
#: Settings (sizes, scores, thresholds) are part of such keys separately, so need no bump.
#: The training-set crop caches (training/data.py) are keyed by alignment and policy only: they
#: detect on a black-padded canvas where boxes rarely pass the border, and rebuilding them means
#: rebuilding the teacher's targets (about an hour of CPU), so a bump leaves them as they are.
DETECTION_VERSION = "mtcnn-v3-visible-area"
#: Crops of one size are resized together in chunks of at most this many float32 values.
_CROP_CHUNK = 8_000_000


@dataclass(frozen=True)
class Detection:
    """One face: box (x1, y1, x2, y2), detector confidence, landmarks (5 x 2: eyes, nose, mouth)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


class FaceDetector:
    """MTCNN with our policy: a minimum face size and score, prominence order, batching."""

    def __init__(
        self,
        device: str | torch.device | None = None,
        min_face_size: int = MIN_FACE_SIZE,
        min_score: float = MIN_SCORE,
        max_side: int = DETECTION_MAX_SIDE,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        max_candidates: int = MAX_CANDIDATES,
    ):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.max_side = max_side
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_candidates = int(max_candidates)
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
        keep = (
            (scores >= self.min_score)
            & ((boxes[:, 2] - boxes[:, 0]) >= self.min_face_size)
            & np.isfinite(boxes).all(axis=1)
            & np.isfinite(points).all(axis=(1, 2))
        )
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


def visible_area(box: np.ndarray, size: tuple[int, int]) -> float:
    """The part of a face box inside the photo.

    MTCNN extends the box of a face cut by the photo's border beyond the border (to where the
    whole face would be): a half-visible face at the edge gets a box larger than the face in
    the middle of the picture. What a person sees, and what can be aligned, is the part inside.
    """
    x1, x2 = np.clip([box[0], box[2]], 0, size[0])
    y1, y2 = np.clip([box[1], box[3]], 0, size[1])
    return float(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))


def sort_by_prominence(detections: list[Detection], size: tuple[int, int]) -> list[Detection]:
    """Largest visible face first; among faces of nearly the same size (within 10%), nearest the centre.

    Size is the box's area inside the photo (visible_area), not the box MTCNN extrapolates past
    the border. Faces are grouped greedily from the largest down: a face joins the current group
    when its side is within 10% of the group's largest (fixed bins would split near-equal faces
    that happen to straddle a bin edge, putting a corner face before a centred one).
    """
    groups: list[list[tuple[float, Detection]]] = []
    for area, d in sorted(((visible_area(d.box, size), d) for d in detections), key=lambda pair: -pair[0]):
        if groups and np.sqrt(area) * 1.1 >= np.sqrt(groups[-1][0][0]):
            groups[-1].append((area, d))
        else:
            groups.append([(area, d)])
    return [d for group in groups for _, d in sorted(group, key=lambda pair: centre_distance(pair[1].box, size))]


def centre_distance(box: np.ndarray, size: tuple[int, int]) -> float:
    """Squared distance from the box's centre to the photo's centre (the tie-break of prominence)."""
    return float(((box[0] + box[2]) / 2 - size[0] / 2.0) ** 2 + ((box[1] + box[3]) / 2 - size[1] / 2.0) ** 2)


def nearest_centre(detections: list[Detection], size: tuple[int, int]) -> Detection | None:
    """The face whose box centre is nearest the image centre (LFW's convention)."""
    if not detections:
        return None
    return min(detections, key=lambda d: centre_distance(d.box, size))
