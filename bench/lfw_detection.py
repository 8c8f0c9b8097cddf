"""How often the product's detector finds no face in an LFW photo (the issue's "at most 1%").

    python bench/lfw_detection.py [--workers 2] [--limit N]

Runs the engine's detector with the product's settings (engine.detect.make_detector() with its
defaults, as FaceEngine builds it: MTCNN, minimum face 20 px, minimum score 0.9) through the
product's detect-pick-align on every LFW photo, and counts photos with no face and with several.
Writes bench/results/lfw_detection.md.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from engine.settings import ROOT  # noqa: E402  (the project root, defined once)


def count(paths: list[str]) -> list[int]:
    import torch
    torch.set_num_threads(1)
    from engine.detect import detect_pick_align, make_detector
    from engine.images import load_image
    detector = make_detector(device="cpu")
    # max_faces=0: count the faces, align none
    return [detect_pick_align(detector, [load_image(p)], max_faces=0)[0].found for p in paths]


def main() -> int:
    from engine.settings import DATA_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    paths = sorted(str(p) for p in (DATA_DIR / "lfw").glob("*/*.jpg"))
    if args.limit:
        paths = paths[: args.limit]
    started = time.time()
    chunks = [paths[i::args.workers] for i in range(args.workers)]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        parts = pool.map(count, chunks)
    counts = [0] * len(paths)
    for i, part in enumerate(parts):
        counts[i::args.workers] = part
    seconds = time.time() - started
    none = [p for p, c in zip(paths, counts) if c == 0]
    several = sum(c > 1 for c in counts)
    text = "\n".join([
        "# LFW: photos where the product's detector finds no face",
        "",
        f"`python bench/lfw_detection.py --workers {args.workers}` on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores, {seconds:.0f} s ({len(paths) / seconds:.1f} photos/s).",
        "Detector settings as the product runs them: MTCNN, minimum face 20 px, minimum score 0.9.",
        "",
        "| photos | no face | share | several faces |",
        "|---|---|---|---|",
        f"| {len(paths)} | {len(none)} | {len(none) / len(paths):.2%} | {several} |",
        "",
        "Photos with no face: " + (", ".join(Path(p).name for p in none[:30]) + (" ..." if len(none) > 30 else "")
                                    if none else "none"),
        "",
        "(The LFW evaluation itself uses the training caches' policy, which also accepts faces scored "
        "0.5-0.9 and picks the face nearest the centre; see bench/results/accuracy.md.)",
        "",
    ])
    (ROOT / "bench" / "results" / "lfw_detection.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
