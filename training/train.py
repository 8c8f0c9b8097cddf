"""Train the twin network: `python -m training.train --config NAME` runs the recipe configs/NAME.json.

    python -m training.train                          # configs/default.json: contrastive only, from scratch
    python -m training.train --config teacher-80      # the shipped weights (`make train RECIPE=teacher-80`)
    python -m training.train --config seed            # the seed notebook's network and recipe
    python -m training.train --minutes 10 --pairs random --name ablation-random

The whole recipe is one TrainConfig (training/config.py, saved in every checkpoint). Batches
are P people x K photos; pairs are mined inside each batch (training/pairs.py); the loss is the
recipe's weighted sum of the terms training/loss.py names (contrastive; with the teacher's
targets, direct and relational distillation: training/objective.py assembles them).

Resuming: every few minutes (--checkpoint-minutes, default 5) the run's whole state (weights,
optimiser, schedule position, step, random generators, history) goes to runs/NAME/resume.pt
(git-ignored). Started again with the same recipe, training continues from it: the step count
goes on and a run budgeted in steps ends as an uninterrupted run would (the same weights on the
same machine). A time-budgeted run (steps = 0, `minutes`) counts only time spent training:
"minutes" in the summary and the model card is the training time of all sessions together,
without the time between an interruption and the resume. The file is removed when the run
ends; --fresh ignores it, --resume PATH names another one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.model import save_checkpoint
from engine.settings import ROOT, RUNS_DIR

from .config import NO_AUGMENT, PRECISIONS, TrainConfig, recipe_config
from .data import CropSet, TeacherTargetsMissing
from .inputs import load_targets, load_training_data, to_input
from .objective import batch_loss, centre_targets
from .pairs import validation_pairs  # noqa: F401  (re-exported: training/thresholds.py reads it here)
from .run import Run, Session, resume_path, start_run
from .validation import validate

#: Seconds between two resume checkpoints (--checkpoint-minutes).
CHECKPOINT_EVERY = 300.0


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
    checkpoint_every: float = CHECKPOINT_EVERY,
    fresh: bool = False,
) -> dict[str, Any]:
    """Run one recipe; returns its summary (also written to run_dir/summary.json).

    data / targets: the crops and the teacher's targets (row for row) instead of the caches.
    init: start from these weights (a checkpoint of the same architecture) instead of random
    ones: fine-tuning, e.g. the shipped contrastive model further trained with the teacher.
    resume: continue from this state file; by default run_dir/resume.pt when it exists (fresh:
    start over). checkpoint_every: seconds between two resume checkpoints (0: every step).
    """
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    data = data if data is not None else load_training_data(config)
    target_tensor = _teacher_targets(config, data, targets)
    run_dir = Path(run_dir or RUNS_DIR / config.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    init = init if init is not None else (ROOT / config.init if config.init else None)
    if resume is None and not fresh and resume_path(run_dir).is_file():
        resume = resume_path(run_dir)
    run = start_run(config, data, target_tensor, device, init, resume)
    if config.distills and config.distill_centre and target_tensor is not None:
        target_tensor = centre_targets(target_tensor, run.train_idx)
    session = Session(run, run_dir, checkpoint_every, progress)
    _loop(run, session, data, target_tensor)
    session.close()
    return _finish(run, data, run_dir, out)


def _teacher_targets(config: TrainConfig, data: CropSet, targets: np.ndarray | None) -> torch.Tensor | None:
    """The teacher's targets as a tensor (None without distillation); fails before anything is
    written, with what to run, when they are missing."""
    if not config.distills:
        if config.singles_per_batch:
            raise ValueError("singles_per_batch needs distillation (distill_weight or relational_weight > 0)")
        return None
    targets = targets if targets is not None else load_targets(config)
    if len(targets) != len(data):
        raise ValueError(f"{len(targets)} teacher targets for {len(data)} training photos")
    return torch.as_tensor(np.asarray(targets, np.float32))


def _loop(run: Run, session: Session, data: CropSet, targets: torch.Tensor | None) -> None:
    """Steps until the budget (steps, or minutes of training time) is spent."""
    config, state = run.config, run.state
    layout = torch.channels_last if config.mixed_precision else torch.contiguous_format
    while session.progress() < 1.0:
        run.model.train()
        if run.projection is not None:
            run.projection.train()
        for group in run.optimiser.param_groups:
            group["lr"] = lr_at(state.step, session.progress(), config)
        idx = run.train_idx[run.sampler.sample()]
        n_labelled = len(idx)
        if config.singles_per_batch:
            extra = run.singles_rng.choice(run.singles, size=config.singles_per_batch, replace=False)
            idx = np.concatenate([idx, extra])
        x = to_input(data.crops[idx], config, True, run.generator).to(run.device).contiguous(memory_format=layout)
        labels = torch.as_tensor(data.labels[idx])
        batch_targets = targets[idx].to(run.device) if targets is not None else None
        loss, stats = batch_loss(run.model, x, labels, config, run.generator, batch_targets, run.projection, n_labelled)
        run.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        run.optimiser.step()
        state.record(loss.item(), stats)
        finished = session.progress() >= 1.0
        if config.eval_every and (state.step % config.eval_every == 0 or finished) and run.val_pairs is not None:
            last = validate(run.model, run.val_crops, run.val_pairs, config, run.device)
            state.validated(stats, last, config.eval_every, session.minutes())
            (session.run_dir / "history.json").write_text(json.dumps(state.history, indent=1))
        session.after_step(stats, finished)


def _finish(run: Run, data: CropSet, run_dir: Path, out: Path | None) -> dict[str, Any]:
    """Save the final weights and the summary; the resume checkpoint is no longer needed."""
    config, state = run.config, run.state
    model = run.model
    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    summary = {
        "name": config.name,
        "steps": state.step,
        "minutes": round(state.elapsed / 60, 1),
        "final_loss": state.running,
        "loss_first10": float(np.mean(state.losses[:10])) if state.losses else None,
        "loss_last10": float(np.mean(state.losses[-10:])) if state.losses else None,
        "images_seen": state.step * (config.p * config.k + config.singles_per_batch),
        "device": str(run.device),
        "threads": config.threads,
        "terms_first10": {k: float(np.mean(v[:10])) for k, v in state.terms.items()},
        "terms_last10": {k: float(np.mean(v[-10:])) for k, v in state.terms.items()},
        "train_images": int(len(run.train_idx)),
        "train_people": int(len(np.unique(data.labels[run.train_idx]))),
        "val": state.last_val,
        "history": state.history,
        "config": asdict(config),
        "initialised_from": run.init_id,
    }
    if state.sessions > 1:
        summary["sessions"] = state.sessions
    out = Path(out or run_dir / "model.pt")
    summary["model_id"] = save_checkpoint(model, out, train=summary)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    resume_path(run_dir).unlink(missing_ok=True)
    return summary


# -- the command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the twin network with the contrastive loss.")
    parser.add_argument(
        "--config",
        default="default",
        help="a recipe: configs/NAME.json by NAME (e.g. default, shipped, seed, ablations/grey), or a JSON file",
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
    parser.add_argument("--run-dir", type=Path, help="the run's folder (default runs/NAME: history, resume.pt)")
    parser.add_argument("--resume", type=Path, help="continue from this state file (default: runs/NAME/resume.pt)")
    parser.add_argument("--fresh", action="store_true", help="start over even when runs/NAME/resume.pt exists")
    parser.add_argument(
        "--checkpoint-minutes", type=float, default=CHECKPOINT_EVERY / 60, help="minutes between resume checkpoints"
    )
    parser.add_argument("--init", type=Path, help="start from these weights (fine-tune) instead of random ones")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe --config names, with the command line's changes."""
    config = recipe_config(args.config)
    if args.resume:
        config = TrainConfig.from_dict(torch.load(args.resume, map_location="cpu", weights_only=False)["config"])
    model_changes = {
        "input_size": args.input_size,
        "embedding_size": args.embedding_size,
        "channels": tuple(args.channels) if args.channels else None,
        "blocks": tuple(args.blocks) if args.blocks else None,
        "in_channels": 1 if args.grey else None,
    }
    names: tuple[str, ...] = ("name", "minutes", "steps", "pairs", "margin", "seed", "threads", "distill_weight")
    names += ("relational_weight", "distill_target", "distill_projection", "distill_centre")
    names += ("singles_per_batch", "precision")
    changes: dict[str, Any] = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    model_changes = {k: v for k, v in model_changes.items() if v is not None}
    if model_changes:
        changes["model"] = replace(config.model, **model_changes)
    if args.no_augment:
        changes["augment"] = NO_AUGMENT
    return replace(config, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = config_from_args(args)
    try:
        summary = train(
            config,
            out=args.out,
            resume=args.resume,
            run_dir=args.run_dir,
            device=args.device,
            init=args.init,
            checkpoint_every=args.checkpoint_minutes * 60,
            fresh=args.fresh,
        )
    except TeacherTargetsMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shown = ("name", "steps", "minutes", "final_loss", "val", "model_id")
    print(json.dumps({k: summary[k] for k in shown}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
