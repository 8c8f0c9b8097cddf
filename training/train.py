"""Train the twin network with the contrastive loss.

    python -m training.train                       # the shipped recipe (preset "default")
    python -m training.train --preset seed         # the seed notebook's network and recipe
    python -m training.train --minutes 10 --pairs random --name ablation-random
    python -m training.train --resume runs/default/last.pt

The whole recipe is one TrainConfig (saved in every checkpoint). Batches are P people x K
photos; pairs are mined inside each batch: every positive pair, plus the hardest negative of
each anchor ("mined"), or the seed's random 50/50 same/different pairs ("random").

Teacher-guided training (distillation) adds two terms beside the contrastive loss, driven by
the teacher's embeddings of the same photos (training/teacher.py, `make teacher`; read here
from .cache/teacher/ with numpy only, the teacher itself is never imported):

    direct      distill_weight    x mean ||s_i - t_i||^2        s, t: the photo's L2-normalised
                                                                student and teacher embeddings
    relational  relational_weight x mean_(i<j) (|s_i - s_j| / mu_s - |t_i - t_j| / mu_t)^2
                                    over the batch, mu the mean distance of each (the shape of
                                    the teacher's distance matrix; the margin keeps the scale)

The student's embedding (128) has the teacher's size, so the direct term compares them as
they are; a student of another size is compared through a linear projection learned
beside it and dropped after training (`distill_projection`). `singles_per_batch` adds
photos of people with a single photo (no pairs, so never in the P x K part) to each
batch: they count in the distillation terms only.

    python -m training.train --distill-weight 2 --relational-weight 1 --singles-per-batch 32 --name distill
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.model import ModelConfig, TwinNet, build_model, embed_crops, pick_device, save_checkpoint

from .data import (
    Augment,
    CropSet,
    PKSampler,
    TeacherTargetsMissing,
    known_sets,
    load_crops,
    load_teacher_targets,
    merge,
    split_by_identity,
)
from .loss import contrastive_loss, direct_distillation_loss, pair_distance, relational_distillation_loss
from .metrics import best_threshold_accuracy, roc_auc

ROOT = Path(__file__).resolve().parent.parent
#: Training precisions: "fp32" plain, "bf16" mixed (see TrainConfig.precision).
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """One training recipe: data, batches, pairs, loss, optimiser, schedule, augmentation."""

    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    sets: tuple[str, ...] = ("celeba_aligned", "celeba_wild", "att_train")
    val_fraction: float = 0.05
    p: int = 42
    k: int = 3
    pairs: str = "mined"  # "mined" (all positives + hardest negatives) or "random"
    margin: float = 1.2
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 300
    schedule: str = "cosine"  # "cosine" decay over the run, or "constant" (the seed notebook)
    steps: int = 0  # 0: run for `minutes` of wall-clock time instead
    minutes: float = 90.0
    eval_every: int = 500
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    threads: int = 2
    raw_images: bool = False  # seed preset: un-aligned photos resized, as the notebook did
    # Distillation from the teacher's targets (0 = off: the from-scratch recipe).
    distill_weight: float = 0.0  # direct: each photo's embedding pulled toward the teacher's
    relational_weight: float = 0.0  # relational: the batch's distance matrix matched to the teacher's
    distill_target: str = "embedding"  # "embedding" (mirror-averaged teacher view) or "plain"
    distill_projection: str = "auto"  # "auto": none when the sizes match, else "linear"; or "none" / "linear"
    distill_centre: bool = False  # centre the targets on the training photos' mean, then renormalise
    singles_per_batch: int = 0  # photos of single-photo people added to each batch (distillation only)
    init: str | None = None  # start from these weights (fine-tuning) instead of random ones
    # "bf16": mixed precision (autocast to bfloat16, weights and losses stay float32) with
    # channels-last tensors: 2.2x faster steps on CPUs with AVX512-BF16 (this one: 0.47 s -> 0.21 s
    # per 158-photo batch), so a time-budgeted recipe takes twice the steps. "fp32": plain.
    precision: str = "fp32"
    recipe: str | None = None  # the configs/ file this came from (set by --config)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be {' or '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def mixed_precision(self) -> bool:
        return self.precision == "bf16"

    @property
    def distills(self) -> bool:
        return self.distill_weight > 0 or self.relational_weight > 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["model"] = ModelConfig.from_dict(data.get("model", {}))
        data["augment"] = Augment(**data.get("augment", {}))
        data["sets"] = tuple(data.get("sets", cls.sets))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


#: Every augmentation switched off (the seed preset, and the --no-augment ablation).
NO_AUGMENT = Augment(flip=0, scale=0, rotate=0, shift=0, brightness=0, contrast=0, saturation=0, grey=0, blur=0)

PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    # The seed notebook: 100x100 grey, its small CNN + 80000-500-500-5 MLP, margin 2.0,
    # Adam 5e-4, 64 random 50/50 pairs per batch, AT&T training subjects only, no alignment.
    # 16 people x 4 photos = 64 anchors, each with one random partner = 64 pairs per batch;
    # 600 steps x 64 pairs ~ the notebook's 100 epochs over its 370 photos.
    "seed": TrainConfig(
        name="seed",
        model=ModelConfig(
            arch="seed", input_size=100, in_channels=1, embedding_size=5, normalize=False, mean=0.0, std=1.0
        ),
        sets=("att_train",),
        val_fraction=0.0,
        p=16,
        k=4,
        pairs="random",
        margin=2.0,
        optimizer="adam",
        lr=5e-4,
        weight_decay=0.0,
        warmup_steps=0,
        schedule="constant",
        steps=600,
        minutes=0,
        eval_every=0,
        augment=NO_AUGMENT,
        raw_images=True,
    ),
}


# -- pairs --------------------------------------------------------------------------------------


def mined_pairs(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All positive pairs, plus each anchor's hardest (nearest) negative. Returns i, j, y."""
    with torch.no_grad():
        same = labels[:, None] == labels[None, :]
        dist = torch.cdist(embeddings, embeddings)
        pos_i, pos_j = torch.triu_indices(len(labels), len(labels), offset=1)
        keep = same[pos_i, pos_j]
        pos_i, pos_j = pos_i[keep], pos_j[keep]
        neg_j = dist.masked_fill(same, float("inf")).argmin(dim=1)
        anchors = torch.arange(len(labels))
    i = torch.cat([pos_i, anchors])
    j = torch.cat([pos_j, neg_j])
    y = torch.cat([torch.zeros(len(pos_i)), torch.ones(len(anchors))])
    return i, j, y


def random_pairs(labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The seed's pairs: each anchor gets a partner, same person or not with probability 1/2."""
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool)
    want_same = torch.rand(n, generator=generator) < 0.5
    choose = torch.where(want_same[:, None], same & ~eye, ~same).float()
    choose[choose.sum(1) == 0] = (~eye).float()[choose.sum(1) == 0]
    j = torch.multinomial(choose, 1, generator=generator).squeeze(1)
    i = torch.arange(n)
    return i, j, (labels[i] != labels[j]).float()


def batch_loss(
    model: TwinNet,
    x: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    targets: torch.Tensor | None = None,
    projection: torch.nn.Module | None = None,
    n_labelled: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Embed the batch once (both branches of the twin share the weights), form pairs, score.

    The first `n_labelled` photos (all, by default) are the P x K part: the contrastive loss
    sees only them. `targets` (the teacher's unit embeddings, one row per photo) add the
    distillation terms over the whole batch, the single-photo people included.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.mixed_precision):
        embeddings = model.embed(x)
    # Pairs, distances and losses in float32 whatever the forward pass ran in (renormalised:
    # a bfloat16 unit vector is unit only to 3 digits).
    embeddings = embeddings.float()
    if config.mixed_precision and config.model.normalize:
        embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    n = len(x) if n_labelled is None else n_labelled
    labelled, labels = embeddings[:n], labels[:n]
    if config.pairs == "mined":
        i, j, y = mined_pairs(labelled.detach(), labels)
    else:
        i, j, y = random_pairs(labels, generator)
    distance = pair_distance(labelled[i], labelled[j])
    contrastive = contrastive_loss(distance, y, config.margin)
    loss = contrastive
    d = distance.detach()
    stats = {
        "contrastive": float(contrastive.detach()),
        "d_same": float(d[y == 0].mean()) if (y == 0).any() else float("nan"),
        "d_diff": float(d[y == 1].mean()) if (y == 1).any() else float("nan"),
    }
    if targets is not None and config.distills:
        student = projection(embeddings) if projection is not None else embeddings
        if config.distill_weight > 0:
            direct = direct_distillation_loss(student, targets)
            loss = loss + config.distill_weight * direct
            stats["distill"] = float(direct.detach())
        if config.relational_weight > 0:
            # Distances of the student's own (shipped) embeddings, not of the projection.
            relational = relational_distillation_loss(embeddings, targets)
            loss = loss + config.relational_weight * relational
            stats["relational"] = float(relational.detach())
    return loss, stats


class Projection(torch.nn.Module):
    """Student embedding -> the teacher's space (a linear map, then L2 norm); training only."""

    def __init__(self, student: int, teacher: int):
        super().__init__()
        self.linear = torch.nn.Linear(student, teacher, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.linear(x), dim=1)


def make_projection(config: TrainConfig, teacher_dim: int) -> Projection | None:
    """None when the student's embedding is compared with the teacher's as it is."""
    kind = config.distill_projection
    if kind == "auto":
        kind = "none" if config.model.embedding_size == teacher_dim else "linear"
    if kind == "none":
        if config.model.embedding_size != teacher_dim:
            raise ValueError(
                f"distill_projection 'none' needs the student's embedding size "
                f"({config.model.embedding_size}) to equal the teacher's ({teacher_dim})"
            )
        return None
    if kind != "linear":
        raise ValueError(f"distill_projection must be auto, none or linear, got {kind!r}")
    return Projection(config.model.embedding_size, teacher_dim)


# -- data -------------------------------------------------------------------------------------


def load_training_data(config: TrainConfig) -> CropSet:
    sets = known_sets()
    if config.raw_images:
        return load_raw(sets[config.sets[0]].root)
    return merge([load_crops(sets[name]) for name in config.sets])


def load_targets(config: TrainConfig, data_dir: Path | None = None) -> np.ndarray:
    """The teacher's targets for the training sets, row for row with load_training_data's crops.

    Raises TeacherTargetsMissing with what to run when they are not cached.
    """
    if config.raw_images:
        raise ValueError("distillation needs aligned crops (teacher targets exist only for the crop cache)")
    sets = known_sets(data_dir) if data_dir else known_sets()
    return np.concatenate([load_teacher_targets(sets[name], kind=config.distill_target) for name in config.sets])


def centre_targets(targets: torch.Tensor, train_rows: np.ndarray) -> torch.Tensor:
    """The teacher's unit embeddings moved to the training photos' mean, then renormalised.

    Why: dlib's raw unit embeddings of different people lie only ~0.56 apart (same person
    ~0.33), a geometry the contrastive margin of 1.2 fights. Centred, they lie ~1.41 apart
    (same person ~0.84), the spacing the margin asks for. Only training rows set the mean.
    """
    centred = targets - targets[torch.as_tensor(train_rows)].mean(dim=0, keepdim=True)
    return torch.nn.functional.normalize(centred, dim=1)


def load_raw(root: Path) -> CropSet:
    """Un-aligned photos as they are (the seed preset resizes them, as the notebook did)."""
    from engine.images import load_image

    from .data import FolderSet

    files = FolderSet("raw", root).files()
    names = sorted({p for p, _ in files})
    crops = np.stack([np.asarray(load_image(path)) for _, path in files])
    labels = np.array([names.index(p) for p, _ in files])
    return CropSet(crops, labels, names, [str(p) for _, p in files], np.ones(len(files), bool))


def to_input(crops: np.ndarray, config: TrainConfig, augment: bool, generator: torch.Generator) -> torch.Tensor:
    from engine.model import normalise

    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    if augment:
        x = config.augment(x, generator)
    return normalise(x, config.model)


# -- validation ---------------------------------------------------------------------------------


def validation_pairs(labels: np.ndarray, seed: int, max_pairs: int = 3000) -> np.ndarray:
    """Same-person pairs of the held-out people, and as many different-person pairs (i, j, y)."""
    rng = np.random.default_rng(seed)
    pos = [(a, b) for a in range(len(labels)) for b in range(a + 1, len(labels)) if labels[a] == labels[b]]
    pos = [pos[i] for i in rng.permutation(len(pos))[: max_pairs // 2]]
    neg = []
    while len(neg) < len(pos):
        a, b = rng.integers(len(labels), size=2)
        if labels[a] != labels[b]:
            neg.append((a, b))
    return np.array([(a, b, 0) for a, b in pos] + [(a, b, 1) for a, b in neg])


def embed_all(
    model: TwinNet, crops: np.ndarray, config: TrainConfig, device: torch.device, flip: bool = True, batch: int = 256
) -> np.ndarray:
    """The model's embeddings of these crops, in eval mode, through the engine's own loop
    (engine.model.embed_crops, as FaceEngine.embed_crops): un-augmented, preprocessed by the
    model's config, which is config.model (train() builds the model from it)."""
    if model.config != config.model:
        raise ValueError("embed_all: the model was not built from this recipe's model config")
    model.eval()
    return embed_crops(model, crops, flip=flip, batch_size=batch, device=device)


def validate(model: TwinNet, crops: np.ndarray, pairs: np.ndarray, config: TrainConfig, device) -> dict[str, float]:
    return score_pairs(embed_all(model, crops, config, device), pairs)


def score_pairs(embeddings: np.ndarray, pairs: np.ndarray) -> dict[str, float]:
    """Best-threshold accuracy, AUC and that threshold of validation pairs (i, j, y) of embeddings."""
    d = np.linalg.norm(embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]], axis=1)
    same = pairs[:, 2] == 0
    acc, thr = best_threshold_accuracy(d, same)
    return {"val_acc": acc, "val_auc": roc_auc(d, same), "val_threshold": thr}


# -- the loop -------------------------------------------------------------------------------------


def lr_at(step: int, progress: float, config: TrainConfig) -> float:
    """Linear warm-up over steps, then a cosine decay over `progress` (0..1 of the run)."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def train(
    config: TrainConfig,
    out: Path | None = None,
    resume: Path | None = None,
    run_dir: Path | None = None,
    device: str | None = None,
    progress: bool = True,
    data: CropSet | None = None,
    targets: np.ndarray | None = None,
    init: Path | None = None,
) -> dict[str, Any]:
    """Run one recipe; returns its summary (also written to run_dir/summary.json).

    data / targets: the crops and the teacher's targets (row for row) instead of the caches.
    init: start from these weights (a checkpoint of the same architecture) instead of random
    ones: fine-tuning, e.g. the shipped contrastive model further trained with the teacher.
    """
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    dev = pick_device(device)
    data = data if data is not None else load_training_data(config)
    if config.distills:
        # Fails here, before anything is written, with what to run when the targets are missing.
        targets = targets if targets is not None else load_targets(config)
        if len(targets) != len(data):
            raise ValueError(f"{len(targets)} teacher targets for {len(data)} training photos")
        target_tensor = torch.as_tensor(np.asarray(targets, np.float32))
    elif config.singles_per_batch:
        raise ValueError("singles_per_batch needs distillation (distill_weight or relational_weight > 0)")
    run_dir = Path(run_dir or ROOT / "runs" / config.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.val_fraction > 0:
        train_idx, val_idx = split_by_identity(data, config.val_fraction, config.seed)
    else:
        train_idx, val_idx = np.arange(len(data)), np.array([], dtype=int)
    if config.distills and config.distill_centre:
        target_tensor = centre_targets(target_tensor, train_idx)
    val_crops = data.crops[val_idx]
    val_pairs = validation_pairs(data.labels[val_idx], config.seed) if len(val_idx) else None
    sampler = PKSampler(data.labels[train_idx], config.p, config.k, seed=config.seed)
    people, counts = np.unique(data.labels[train_idx], return_counts=True)
    # Photos of people with a single photo: no pairs, but the teacher still has a target for them.
    singles = train_idx[np.isin(data.labels[train_idx], people[counts == 1])]
    if config.singles_per_batch and len(singles) < config.singles_per_batch:
        raise ValueError(f"singles_per_batch {config.singles_per_batch} but only {len(singles)} single-photo people")
    singles_rng = np.random.default_rng(config.seed + 1)
    layout = torch.channels_last if config.mixed_precision else torch.contiguous_format
    model = build_model(config.model).to(dev)
    init_id = None
    init = init if init is not None else (ROOT / config.init if config.init else None)
    if init is not None and not resume:
        start = torch.load(init, map_location="cpu", weights_only=True)
        model.load_state_dict(start["state_dict"])
        init_id = start.get("model_id")
    model = model.to(memory_format=layout)
    projection = make_projection(config, target_tensor.shape[1]) if config.distills else None
    if projection is not None:
        projection.to(dev)
    params = list(model.parameters()) + (list(projection.parameters()) if projection is not None else [])
    optimiser = (
        torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        if config.optimizer == "adamw"
        else torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    )
    generator = torch.Generator().manual_seed(config.seed)
    step, total, history, elapsed_before = 0, config.steps, [], 0.0
    if resume:
        state = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        if projection is not None and state.get("projection") is not None:
            projection.load_state_dict(state["projection"])
        optimiser.load_state_dict(state["optimiser"])
        if state.get("singles_rng") is not None:
            singles_rng = state["singles_rng"]
        step, total, history = state["step"], state["total"], state["history"]
        elapsed_before = state.get("elapsed", 0.0)
        sampler.rng = state["sampler_rng"]
        generator.set_state(state["generator"])
    started = time.time()
    # With steps == 0 the run is budgeted in time, not steps: the cosine schedule follows the
    # fraction of the budget spent, so a machine shared with other work still ends on time
    # with a fully decayed learning rate.
    budget = config.minutes * 60

    def progress_now() -> float:
        if total:
            return step / total
        return (elapsed_before + time.time() - started) / budget

    bar = tqdm(total=total or None, initial=step, disable=not progress, mininterval=10, desc=config.name)
    last_val: dict[str, float] = {}
    running = None
    losses: list[float] = []
    terms: dict[str, list[float]] = {}
    while progress_now() < 1.0:
        model.train()
        if projection is not None:
            projection.train()
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, progress_now(), config)
        idx = train_idx[sampler.sample()]
        n_labelled = len(idx)
        if config.singles_per_batch:
            idx = np.concatenate([idx, singles_rng.choice(singles, size=config.singles_per_batch, replace=False)])
        x = to_input(data.crops[idx], config, True, generator).to(dev).contiguous(memory_format=layout)
        labels = torch.as_tensor(data.labels[idx])
        batch_targets = target_tensor[idx].to(dev) if config.distills else None
        loss, stats = batch_loss(model, x, labels, config, generator, batch_targets, projection, n_labelled)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append(loss.item())
        for key in ("contrastive", "distill", "relational"):
            if key in stats:
                terms.setdefault(key, []).append(stats[key])
        running = losses[-1] if running is None else 0.98 * running + 0.02 * losses[-1]
        bar.update(1)
        finished = progress_now() >= 1.0
        if config.eval_every and (step % config.eval_every == 0 or finished) and val_pairs is not None:
            last_val = validate(model, val_crops, val_pairs, config, dev)
            history.append(
                {
                    "step": step,
                    "loss": running,
                    **stats,
                    **last_val,
                    **{f"{k}_mean": float(np.mean(v[-config.eval_every :])) for k, v in terms.items()},
                    "minutes": (elapsed_before + time.time() - started) / 60,
                }
            )
            bar.set_postfix(loss=f"{running:.4f}", val_acc=f"{last_val['val_acc']:.3f}")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "step": step,
                    "total": total,
                    "history": history,
                    "config": asdict(config),
                    "elapsed": elapsed_before + time.time() - started,
                    "sampler_rng": sampler.rng,
                    "generator": generator.get_state(),
                    "singles_rng": singles_rng,
                    "projection": projection.state_dict() if projection is not None else None,
                },
                run_dir / "last.pt.tmp",
            )
            (run_dir / "last.pt.tmp").replace(run_dir / "last.pt")
            (run_dir / "history.json").write_text(json.dumps(history, indent=1))
        elif step % 20 == 0:
            bar.set_postfix(loss=f"{running:.4f}", **({"val_acc": f"{last_val['val_acc']:.3f}"} if last_val else {}))
    bar.close()
    minutes = (elapsed_before + time.time() - started) / 60
    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    summary = {
        "name": config.name,
        "steps": step,
        "minutes": round(minutes, 1),
        "final_loss": running,
        "loss_first10": float(np.mean(losses[:10])) if losses else None,
        "loss_last10": float(np.mean(losses[-10:])) if losses else None,
        "images_seen": step * (config.p * config.k + config.singles_per_batch),
        "device": str(dev),
        "threads": config.threads,
        "terms_first10": {k: float(np.mean(v[:10])) for k, v in terms.items()},
        "terms_last10": {k: float(np.mean(v[-10:])) for k, v in terms.items()},
        "train_images": int(len(train_idx)),
        "train_people": int(len(np.unique(data.labels[train_idx]))),
        "val": last_val,
        "history": history,
        "config": asdict(config),
        "initialised_from": init_id,
    }
    out = Path(out or run_dir / "model.pt")
    summary["model_id"] = save_checkpoint(model, out, train=summary)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the twin network with the contrastive loss.")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument(
        "--config",
        help="a recipe: configs/NAME.json by NAME (e.g. shipped, ablations/grey), or a JSON file; overrides --preset",
    )
    parser.add_argument("--name")
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--pairs", choices=["mined", "random"])
    parser.add_argument("--margin", type=float)
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--grey", action="store_true", help="train on grey input")
    parser.add_argument("--embedding-size", type=int)
    parser.add_argument("--channels", type=int, nargs="+")
    parser.add_argument("--blocks", type=int, nargs="+")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device")
    parser.add_argument("--distill-weight", type=float, help="direct distillation toward the teacher (0 = off)")
    parser.add_argument("--relational-weight", type=float, help="relational distillation (batch distances; 0 = off)")
    parser.add_argument(
        "--distill-target",
        choices=["embedding", "plain"],
        help="the teacher's mirror-averaged embedding (default) or the photo's alone",
    )
    parser.add_argument("--distill-projection", choices=["auto", "none", "linear"])
    parser.add_argument(
        "--distill-centre",
        action="store_true",
        default=None,
        help="centre the teacher's targets on the training mean (spacing that suits the margin)",
    )
    parser.add_argument(
        "--singles-per-batch", type=int, help="single-photo people added to each batch (distillation only)"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, help="bf16: mixed precision, ~2x faster on CPUs with AVX512-BF16"
    )
    parser.add_argument("--out", type=Path, help="where the final weights go (default runs/NAME/model.pt)")
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--init", type=Path, help="start from these weights (fine-tune) instead of random ones")
    args = parser.parse_args(argv)
    if args.config:
        from .recipes import resolve

        config = TrainConfig.from_dict({**resolve(args.config), "recipe": str(args.config)})
    else:
        config = PRESETS[args.preset]
    if args.resume:
        config = TrainConfig.from_dict(torch.load(args.resume, map_location="cpu", weights_only=False)["config"])
    model_changes = {
        k: v
        for k, v in {
            "input_size": args.input_size,
            "embedding_size": args.embedding_size,
            "channels": tuple(args.channels) if args.channels else None,
            "blocks": tuple(args.blocks) if args.blocks else None,
            "in_channels": 1 if args.grey else None,
        }.items()
        if v is not None
    }
    changes = {
        k: v
        for k, v in {
            "name": args.name,
            "minutes": args.minutes,
            "steps": args.steps,
            "pairs": args.pairs,
            "margin": args.margin,
            "seed": args.seed,
            "threads": args.threads,
            "distill_weight": args.distill_weight,
            "relational_weight": args.relational_weight,
            "distill_target": args.distill_target,
            "distill_projection": args.distill_projection,
            "distill_centre": args.distill_centre,
            "singles_per_batch": args.singles_per_batch,
            "precision": args.precision,
        }.items()
        if v is not None
    }
    if model_changes:
        changes["model"] = replace(config.model, **model_changes)
    if args.no_augment:
        changes["augment"] = NO_AUGMENT
    config = replace(config, **changes)
    try:
        summary = train(config, out=args.out, resume=args.resume, device=args.device, init=args.init)
    except TeacherTargetsMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shown = ("name", "steps", "minutes", "final_loss", "val", "model_id")
    print(json.dumps({k: summary[k] for k in shown}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
