"""Command line: compare two photos, or list the faces in one.

    python -m engine compare a.jpg b.jpg [--face-a N] [--face-b N] [--device cpu] [--json]
    python -m engine faces photo.jpg [--device cpu] [--json]

Faces are numbered from 1, most prominent first (as `faces` lists them). Exit status: 0 on
success, 2 with one line on stderr when a photo is unusable, has no face (or not the chosen
one), or the model weights are missing; also 2 for wrong arguments (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import FaceError, InvalidImage, NoFaceFound
from .model import DEFAULT_WEIGHTS
from .picking import face_argument

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except FaceError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Twin face engine: compare faces in photos.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compare = commands.add_parser(
        "compare",
        help="are the faces in two photos the same person?",
        description="Compare the most prominent face (or the chosen one) of two photos.",
    )
    compare.add_argument("photo_a", type=Path, help="first photo")
    compare.add_argument("photo_b", type=Path, help="second photo")
    compare.add_argument(
        "--face-a",
        type=face_argument,
        default=1,
        metavar="N",
        help="which face of the first photo, 1 = most prominent (default 1)",
    )
    compare.add_argument(
        "--face-b", type=face_argument, default=1, metavar="N", help="which face of the second photo (default 1)"
    )
    compare.set_defaults(run=_compare)

    faces = commands.add_parser(
        "faces",
        help="list the faces found in a photo",
        description="List every face found in a photo, most prominent first.",
    )
    faces.add_argument("photo", type=Path, help="the photo")
    faces.set_defaults(run=_faces)

    for sub in (compare, faces):
        sub.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
        sub.add_argument(
            "--weights", type=Path, default=DEFAULT_WEIGHTS, help="model checkpoint (default: engine/weights/twin.pt)"
        )
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def _load(path: Path, which: str):
    """Decode a photo before the (slow) model loads; errors name the file."""
    from .images import load_image

    try:
        return load_image(path)
    except InvalidImage as exc:
        raise InvalidImage(f"{which} photo {path}: {exc}") from None


def _engine(args: argparse.Namespace):
    import torch

    from .pipeline import FaceEngine

    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise FaceError(f"unknown device {args.device!r} (try cpu or cuda)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise FaceError("--device cuda was asked for, but no CUDA device is available")
    return FaceEngine(weights=args.weights, device=args.device)


def _compare(args: argparse.Namespace) -> int:
    photo_a = _load(args.photo_a, "first")
    photo_b = _load(args.photo_b, "second")
    engine = _engine(args)
    try:
        result = engine.compare(photo_a, photo_b, face_a=args.face_a, face_b=args.face_b)
    except NoFaceFound as exc:
        path = args.photo_a if exc.which == "first" else args.photo_b
        raise NoFaceFound(f"{exc} ({path})", which=exc.which) from None
    verdict = "same person" if result.same else "different people"
    if args.json:
        print(
            json.dumps(
                {
                    "distance": round(result.distance, 6),
                    "same": bool(result.same),
                    "similarity": round(result.similarity, 6),
                    "threshold": result.threshold,
                    "model_id": engine.model_id,
                    "face_a": _face_json(result.face_a, args.face_a),
                    "face_b": _face_json(result.face_b, args.face_b),
                }
            )
        )
        return 0
    print(f"distance:   {result.distance:.4f}")
    print(f"verdict:    {verdict} (same when distance <= {result.threshold:.4f})")
    print(f"similarity: {result.similarity * 100:.1f}%")
    print(f"model:      {engine.model_id}")
    return 0


def _faces(args: argparse.Namespace) -> int:
    photo = _load(args.photo, "the")
    engine = _engine(args)
    found = engine.faces(photo)
    if args.json:
        print(json.dumps({"size": list(photo.size), "faces": [_face_json(f, n) for n, f in enumerate(found, 1)]}))
        return 0
    if not found:
        print(f"no face found in {args.photo} ({photo.width}x{photo.height})")
        return 0
    print(f"{len(found)} face(s) in {args.photo} ({photo.width}x{photo.height}), most prominent first:")
    for number, face in enumerate(found, 1):
        x1, y1, x2, y2 = (float(v) for v in face.box)
        print(
            f"  {number}: box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})  {x2 - x1:.0f}x{y2 - y1:.0f} px  "
            f"score {face.score:.3f}"
        )
    return 0


def _face_json(face, number: int) -> dict:
    """A face for --json: its number (from 1, as the app and `faces` count), box and score."""
    return {"number": number, "box": [round(float(v), 1) for v in face.box], "score": round(float(face.score), 4)}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
