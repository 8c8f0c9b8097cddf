"""The seed's experiment, reproduced, next to the shipped model.

    python bench/seed.py                 # `make bench-seed`; trains runs/seed/model.pt first if missing
    python bench/seed.py --retrain       # train the seed network again (python -m training.train --config seed)

The seed network (engine/seed.py, the recipe configs/seed.json: 100x100 grey, three
ReflectionPad-Conv-ReLU-BatchNorm blocks, FC 80000-500-500-5, contrastive loss with margin 2.0,
Adam 5e-4, 64 random 50/50 pairs per batch, 600 steps ~ the notebook's 100 epochs) is trained on
the un-aligned AT&T training photos (37 people) resized, as the notebook did. Its checkpoint
(160 MB) stays in runs/ (git-ignored).

Both models see the 30 photos of the 3 AT&T testing subjects (s5-s7, never trained on):
- the seed network: the raw photo, resized to 100x100 grey by its own config (no detection);
- the shipped model: through the engine, FaceEngine.faces(path) (detect, align, embed).

Outputs: bench/results/seed.png, the notebook's kind of figure (pairs side by side, captioned
with their dissimilarity) for both models on the same pairs, and bench/results/seed.md: pair
accuracy on all 435 pairs of the testing subjects (135 same, 300 different) at each model's own
threshold. The seed has no shipped threshold: it is fitted on the pairs of its TRAINING subjects
(balanced accuracy: same and different pairs weigh alike). Ours uses engine.threshold (fitted
on LFW View 1).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from engine.settings import ROOT  # noqa: E402  (the project root, defined once)

import numpy as np  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SEED_MODEL = ROOT / "runs" / "seed" / "model.pt"
#: The pairs of the figure: (subject, photo) x 2, over the testing subjects s5-s7.
FIGURE_PAIRS = [(("s5", 1), ("s5", 2)), (("s5", 1), ("s6", 1)), (("s6", 3), ("s6", 7)), (("s6", 3), ("s7", 3)),
                (("s7", 5), ("s7", 9)), (("s7", 5), ("s5", 5)), (("s5", 4), ("s5", 10)), (("s6", 8), ("s7", 8))]


# -- pairs and thresholds (model-independent) ---------------------------------------------------
# The seed's threshold: training.metrics.best_threshold_accuracy(..., balanced=True), the one
# threshold search, maximising the balanced accuracy (same and different pairs weigh alike).

def all_pairs(people: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair of photos: (i, j, same), i < j."""
    people = np.asarray(people)
    i, j = np.triu_indices(len(people), k=1)
    return i, j, people[i] == people[j]


def pair_scores(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy over all pairs at the threshold, and on same and different pairs apart."""
    from training.metrics import roc_auc
    d, same = np.asarray(distances), np.asarray(same, bool)
    said_same = d <= threshold
    return {"pairs": int(len(d)), "same_pairs": int(same.sum()), "different_pairs": int((~same).sum()),
            "accuracy": float(np.mean(said_same == same)),
            "same_accepted": float(np.mean(said_same[same])), "different_rejected": float(np.mean(~said_same[~same])),
            "balanced": float((np.mean(said_same[same]) + np.mean(~said_same[~same])) / 2),
            "auc": roc_auc(d, same)}


def pair_distances(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    e = np.asarray(embeddings, np.float64)
    return np.linalg.norm(e[i] - e[j], axis=1)


# -- the two models ------------------------------------------------------------------------------

def photos_of(root: Path) -> tuple[list[Path], list[str]]:
    """Every photo of an AT&T folder (s1/1.pgm ...), person by person, in natural order."""
    from training.data import FolderSet
    files = FolderSet("att", root).files()
    files.sort(key=lambda item: (int(item[0][1:]) if item[0][1:].isdigit() else item[0],
                                 int(item[1].stem) if item[1].stem.isdigit() else item[1].stem))
    return [p for _, p in files], [person for person, _ in files]


def embed_raw(model: Any, paths: Sequence[Path], device: Any = "cpu", batch: int = 64) -> np.ndarray:
    """The seed's way: the whole photo, no detection, resized and made grey by the model's own
    config (TwinNet.preprocess -> normalise); the raw (un-normalised) outputs, no flip."""
    import torch

    from engine.images import load_image
    out = []
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(paths), batch):
            x = torch.cat([model.preprocess(np.array(load_image(p))[None]) for p in paths[s:s + batch]])
            out.append(model.embed(x.to(device)).float().cpu().numpy())
    return np.concatenate(out)


def embed_engine(engine: Any, paths: Sequence[Path]) -> tuple[np.ndarray, int]:
    """The product's way: FaceEngine.faces(path), the most prominent face. Photos where no face
    is found fall back to the engine's cached crop of that photo (padded detection, as
    training.data caches it); returns the embeddings and how many needed that fallback."""
    out, missing = [], []
    for i, path in enumerate(paths):
        faces = engine.faces(path)
        out.append(faces[0].embedding if faces else None)
        if not faces:
            missing.append(i)
    if missing:
        from training.data import known_sets, load_crops
        data = load_crops(known_sets()["att_test"], progress=False)
        where = data.index_of()
        for i in missing:
            rel = f"{Path(paths[i]).parent.name}/{Path(paths[i]).name}"
            out[i] = engine.embed_crops(data.crops[where[rel]][None])[0]
    return np.stack(out).astype(np.float32), len(missing)


def train_seed(path: Path, steps: int | None = None, threads: int | None = None, device: str | None = None) -> dict:
    from training.config import recipe_config
    from training.train import train
    config = recipe_config("seed")
    changes = {k: v for k, v in {"steps": steps, "threads": threads}.items() if v}
    if changes:
        config = replace(config, **changes)
    return train(config, out=path, run_dir=path.parent, device=device)


# -- the figure -----------------------------------------------------------------------------------

def figure(rows: list[dict[str, Any]], photos: dict[tuple[str, int], np.ndarray], path: Path) -> None:
    """rows: {"label", "threshold", "distance": {pair: d}}; one row per model, one column per pair."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(FIGURE_PAIRS)
    fig, axes = plt.subplots(len(rows), n, figsize=(2.3 * n, 2.05 * len(rows) + 0.6), squeeze=False)
    for r, row in enumerate(rows):
        for c, pair in enumerate(FIGURE_PAIRS):
            a, b = (photos[p] for p in pair)
            gap = np.full((a.shape[0], 4), 255, np.uint8)
            ax = axes[r, c]
            ax.imshow(np.hstack([a, gap, b]), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            same = pair[0][0] == pair[1][0]
            d = row["distance"][pair]
            said_same = d <= row["threshold"]
            colour = "tab:green" if said_same == same else "tab:red"
            ax.set_title(f"Dissimilarity: {d:.2f}\n{'same' if said_same else 'different'}"
                         f" {'✓' if said_same == same else '✗'}", fontsize=9, color=colour)
            if r == len(rows) - 1:
                ax.set_xlabel(f"{pair[0][0]}/{pair[0][1]} vs {pair[1][0]}/{pair[1][1]}\n"
                              f"({'same person' if same else 'different people'})", fontsize=8)
            if c == 0:
                ax.set_ylabel(row["label"], fontsize=9)
    fig.suptitle("AT&T testing subjects s5-s7 (never trained on): dissimilarity of each pair; verdict at "
                 "each model's threshold (green right, red wrong)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def lfw_section(seed: Any, engine: Any, lfw_dir: Path, device: Any) -> list[str]:
    """Both models on LFW View 2 (standard 10-fold protocol): what the seed does with real photos."""
    from training.evaluate import evaluate, folds_of, parse_pairs, ten_fold_accuracy
    from training.evaluate import pair_distances as lfw_pair_distances
    from training.metrics import roc_auc
    pairs = parse_pairs(lfw_dir / "pairs.txt")
    needed = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    vectors = embed_raw(seed, [lfw_dir / p for p in needed], device)
    d, same = lfw_pair_distances(dict(zip(needed, vectors)), pairs)
    seed_acc = ten_fold_accuracy(d, same, folds_of(lfw_dir / "pairs.txt", len(pairs)))
    ours = evaluate(engine, lfw_dir, plots=None)
    return ["", "## Beyond AT&T: LFW View 2", "",
            "Both models on the 6,000 LFW View 2 pairs (real photos, people neither model saw), standard "
            "10-fold protocol (threshold fitted on 9 folds, tested on the 10th). The seed sees the whole "
            "250x250 photo resized to 100x100 grey, as it would any photo; ours the detected, aligned face.", "",
            "| model | LFW View 2 10-fold accuracy | ROC AUC |", "|---|---|---|",
            f"| seed network | {pct(seed_acc['mean'])} ± {seed_acc['std'] * 100:.2f} | {roc_auc(d, same):.3f} |",
            f"| Twin (shipped) | {pct(ours['view2_10fold']['mean'])} ± {ours['view2_10fold']['std'] * 100:.2f} | "
            f"{ours['roc_auc']:.3f} |"]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The seed's experiment reproduced, beside the shipped model.")
    parser.add_argument("--seed-model", type=Path, default=SEED_MODEL, help="the seed checkpoint (trained if missing)")
    parser.add_argument("--retrain", action="store_true", help="train the seed network even if its checkpoint exists")
    parser.add_argument("--steps", type=int, help="train for this many steps instead of the preset's 600 "
                                                  "(only with a --seed-model other than runs/seed/model.pt)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for training and embedding")
    parser.add_argument("--weights", type=Path, help="ours; default engine/weights/twin.pt")
    parser.add_argument("--no-lfw", action="store_true", help="skip both models on LFW View 2 (needs the LFW crop cache)")
    parser.add_argument("--device", help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--out", type=Path, default=RESULTS / "seed.md", help="the table; the figure goes beside it (.png)")
    args = parser.parse_args(argv)
    if args.steps and args.seed_model.resolve() == SEED_MODEL.resolve():
        parser.error("--steps would make runs/seed/model.pt something other than the seed's recipe: "
                     "give another --seed-model path")
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from engine import FaceEngine
    from engine.images import load_image
    from engine.model import DEFAULT_WEIGHTS, load_checkpoint, pick_device
    from engine.settings import DATA_DIR
    from training.config import recipe_config
    from training.metrics import best_threshold_accuracy

    started = time.time()
    trained_now = False
    if args.retrain or not args.seed_model.is_file():
        print(f"training the seed network into {rel(args.seed_model)} ...", flush=True)
        train_seed(args.seed_model, args.steps, args.threads, args.device)
        trained_now = True
    device = pick_device(args.device)
    seed, seed_meta = load_checkpoint(args.seed_model, device)
    if seed.config.arch != "seed":
        raise SystemExit(f"{args.seed_model} is not a seed network (arch {seed.config.arch!r})")
    train_info = seed_meta.get("train", {})
    weights = args.weights or DEFAULT_WEIGHTS
    engine = FaceEngine(weights, device=args.device)

    att = DATA_DIR / "att_faces"
    train_paths, train_people = photos_of(att / "training")
    test_paths, test_people = photos_of(att / "testing")

    # the seed: threshold fitted on all pairs of its training subjects, then the testing pairs
    e_train = embed_raw(seed, train_paths, device)
    ti, tj, tsame = all_pairs(train_people)
    seed_fit, seed_threshold = best_threshold_accuracy(pair_distances(e_train, ti, tj), tsame, balanced=True)
    seed_train_scores = pair_scores(pair_distances(e_train, ti, tj), tsame, seed_threshold)
    e_seed = embed_raw(seed, test_paths, device)
    # ours: through the engine
    e_ours, fallback = embed_engine(engine, test_paths)

    i, j, same = all_pairs(test_people)
    scores = {"seed": pair_scores(pair_distances(e_seed, i, j), same, seed_threshold),
              "ours": pair_scores(pair_distances(e_ours, i, j), same, engine.threshold)}

    index = {(p, int(Path(x).stem)): n for n, (p, x) in enumerate(zip(test_people, test_paths))}
    photos = {key: np.asarray(load_image(test_paths[n]).convert("L")) for key, n in index.items()}

    def distances(e: np.ndarray) -> dict:
        return {pair: float(np.linalg.norm(e[index[pair[0]]] - e[index[pair[1]]])) for pair in FIGURE_PAIRS}

    steps = train_info.get("steps")
    preset_steps = recipe_config("seed").steps
    seed_label = f"seed network\n({steps} steps, raw photo)"
    ours_label = f"Twin (shipped)\n{engine.model_id}"
    png = args.out.with_suffix(".png")
    figure([{"label": seed_label, "threshold": seed_threshold, "distance": distances(e_seed)},
            {"label": ours_label, "threshold": engine.threshold, "distance": distances(e_ours)}], photos, png)

    command = " ".join(["python", "bench/seed.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    s, o = scores["seed"], scores["ours"]
    lines = ["# The seed's experiment, reproduced", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- command: `{command}`" + (" (trained the seed network in this run)" if trained_now else ""),
             f"- machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, device {device}",
             f"- seed network: `{rel(args.seed_model)}`, model id `{seed_meta['model_id']}`, recipe `seed` (configs/seed.json) of "
             f"training.train: {steps} steps ({train_info.get('minutes', '?')} min on {train_info.get('device', '?')}, "
             f"loss {_fmt(train_info.get('loss_first10'))} -> {_fmt(train_info.get('loss_last10'))}, first and last 10 steps) "
             f"on the {train_info.get('train_images', '?')} un-aligned AT&T training photos of "
             f"{train_info.get('train_people', '?')} people, resized to 100x100 grey, as the notebook did.",
             f"- Twin (ours): `{rel(weights)}`, model id `{engine.model_id}`, through the engine "
             f"(FaceEngine.faces: detect, align, embed){f'; {fallback} photo(s) with no face found used the cached padded crop' if fallback else ''}.",
             ]
    if steps != preset_steps:
        lines.append(f"- **not the seed's recipe**: {steps} steps instead of {preset_steps} (a smoke run)")
    lines += ["", "## Pair accuracy on the AT&T testing subjects", "",
              f"All pairs of the 30 photos of s5, s6 and s7 (never trained on by either model): {s['same_pairs']} "
              f"same-person and {s['different_pairs']} different-person pairs. Each model at its own threshold.", "",
              "| model | input | threshold | accuracy (all pairs) | same pairs accepted | different pairs rejected | balanced accuracy | ROC AUC |",
              "|---|---|---|---|---|---|---|---|",
              f"| seed network | whole photo, 100x100 grey | {seed_threshold:.3f} (fitted on its training subjects' pairs) | "
              f"{pct(s['accuracy'])} | {pct(s['same_accepted'])} | {pct(s['different_rejected'])} | {pct(s['balanced'])} | {s['auc']:.3f} |",
              f"| Twin (shipped) | detected, aligned face | {engine.threshold:.3f} (engine.threshold, LFW View 1) | "
              f"{pct(o['accuracy'])} | {pct(o['same_accepted'])} | {pct(o['different_rejected'])} | {pct(o['balanced'])} | {o['auc']:.3f} |",
              "",
              "Thresholds: the seed has no shipped threshold. Its threshold is the one with the best balanced "
              f"accuracy (same and different pairs weigh alike) on all {seed_train_scores['pairs']} pairs of its 37 "
              f"TRAINING subjects ({seed_train_scores['same_pairs']} same, {seed_train_scores['different_pairs']} "
              f"different); there it reaches {pct(seed_fit)} balanced accuracy ({pct(seed_train_scores['accuracy'])} "
              "over all those pairs). Ours is the shipped `engine.threshold`, fitted on LFW View 1; no AT&T pair "
              "chose it. The accuracy over all pairs weighs different pairs 300 to 135; the balanced accuracy "
              "does not. Distances are not comparable across the two models: the seed compares raw 5-number "
              "outputs (margin 2.0), ours unit-length embeddings (0 to 2).", "",
              "## The seed's figure, for both models", "",
              f"![pairs of AT&T testing faces with their dissimilarity]({png.name})", "",
              "The same 8 pairs for both models (top: the seed network, bottom: ours), captioned with each "
              "model's dissimilarity (Euclidean distance) and its verdict at that model's threshold.", "",
              "| pair | truth | seed: dissimilarity | Twin: dissimilarity |", "|---|---|---|---|"]
    ds, do = distances(e_seed), distances(e_ours)
    for pair in FIGURE_PAIRS:
        truth = "same" if pair[0][0] == pair[1][0] else "different"
        lines.append(f"| {pair[0][0]}/{pair[0][1]} vs {pair[1][0]}/{pair[1][1]} | {truth} | "
                     f"{ds[pair]:.3f} ({'same' if ds[pair] <= seed_threshold else 'different'}) | "
                     f"{do[pair]:.3f} ({'same' if do[pair] <= engine.threshold else 'different'}) |")
    if not args.no_lfw:
        lines += lfw_section(seed, engine, DATA_DIR / "lfw", device)
    lines += ["", f"Total run time {(time.time() - started) / 60:.1f} min."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[lines.index("## Pair accuracy on the AT&T testing subjects"):]))
    print(f"wrote {rel(args.out)} and {rel(png)}")
    return 0


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "?"


if __name__ == "__main__":
    sys.exit(main())
