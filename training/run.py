"""One training run's state: what the loop changes, how it is saved to resume, and its clock.

`start_run` builds everything a recipe needs (split, sampler, model, projection, optimiser,
random generators), from scratch or from a resume checkpoint. `Session` is one process's
share of the run: its clock (a time-budgeted run counts training time only, summed over
sessions), its progress bar, and the resume checkpoint it writes every few minutes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.model import TwinNet, build_model, pick_device

from .config import TrainConfig
from .data import CropSet, PKSampler, split_by_identity
from .loss import LOSS_TERMS
from .objective import Projection, make_projection
from .pairs import validation_pairs

#: Recipe keys that may change between an interruption and the resume (they change no result).
RESUMABLE_CHANGES = ("threads",)


def resume_path(run_dir: Path) -> Path:
    """Where a run's resume checkpoint lives (runs/NAME/ is git-ignored)."""
    return Path(run_dir) / "resume.pt"


@dataclass
class RunState:
    """The run's counters and records: saved in the resume checkpoint, summed up at the end."""

    step: int = 0
    total: int = 0  # steps of the run; 0: budgeted in minutes
    elapsed: float = 0.0  # seconds of training, all sessions together
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    running: float | None = None
    last_val: dict[str, float] = field(default_factory=dict)
    sessions: int = 1

    def record(self, loss: float, stats: dict[str, float]) -> None:
        """One step done: its loss and each loss term's value."""
        self.step += 1
        self.losses.append(loss)
        for key in LOSS_TERMS:
            if key in stats:
                self.terms.setdefault(key, []).append(stats[key])
        self.running = loss if self.running is None else 0.98 * self.running + 0.02 * loss

    def validated(self, stats: dict[str, float], val: dict[str, float], every: int, minutes: float) -> None:
        """A validation pass: one history row."""
        self.last_val = val
        means = {f"{k}_mean": float(np.mean(v[-every:])) for k, v in self.terms.items()}
        self.history.append({"step": self.step, "loss": self.running, **stats, **val, **means, "minutes": minutes})


@dataclass
class Run:
    """Everything one recipe's training works on."""

    config: TrainConfig
    device: torch.device
    model: TwinNet
    projection: Projection | None
    optimiser: torch.optim.Optimizer
    generator: torch.Generator
    sampler: PKSampler
    singles_rng: np.random.Generator
    train_idx: np.ndarray
    singles: np.ndarray
    val_crops: np.ndarray
    val_pairs: np.ndarray | None
    init_id: str | None = None
    state: RunState = field(default_factory=RunState)


def start_run(
    config: TrainConfig,
    data: CropSet,
    targets: torch.Tensor | None,
    device: str | None,
    init: Path | None,
    resume: Path | None,
) -> Run:
    """A recipe's run from scratch (from `init`'s weights when given), or continued from `resume`."""
    dev = pick_device(device)
    if config.val_fraction > 0:
        train_idx, val_idx = split_by_identity(data, config.val_fraction, config.seed)
    else:
        train_idx, val_idx = np.arange(len(data)), np.array([], dtype=int)
    val_pairs = validation_pairs(data.labels[val_idx], config.seed) if len(val_idx) else None
    sampler = PKSampler(data.labels[train_idx], config.p, config.k, seed=config.seed)
    people, counts = np.unique(data.labels[train_idx], return_counts=True)
    # Photos of people with a single photo: no pairs, but the teacher still has a target for them.
    singles = train_idx[np.isin(data.labels[train_idx], people[counts == 1])]
    if config.singles_per_batch and len(singles) < config.singles_per_batch:
        raise ValueError(f"singles_per_batch {config.singles_per_batch} but only {len(singles)} single-photo people")
    model = build_model(config.model).to(dev)
    init_id = None
    if init is not None and not resume:
        start = torch.load(init, map_location="cpu", weights_only=True)
        model.load_state_dict(start["state_dict"])
        init_id = start.get("model_id")
    layout = torch.channels_last if config.mixed_precision else torch.contiguous_format
    model = model.to(memory_format=layout)  # type: ignore[call-overload]
    projection = make_projection(config, targets.shape[1]) if targets is not None else None
    if projection is not None:
        projection.to(dev)
    params = list(model.parameters()) + (list(projection.parameters()) if projection is not None else [])
    optimiser: torch.optim.Optimizer = (
        torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        if config.optimizer == "adamw"
        else torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    )
    run = Run(
        config,
        dev,
        model,
        projection,
        optimiser,
        torch.Generator().manual_seed(config.seed),
        sampler,
        np.random.default_rng(config.seed + 1),
        train_idx,
        singles,
        data.crops[val_idx],
        val_pairs,
        init_id,
        RunState(total=config.steps),
    )
    if resume:
        restore(run, resume)
    return run


def save(run: Run, path: Path, elapsed: float) -> None:
    """The run's whole state, atomically (a kill mid-write leaves the previous checkpoint)."""
    state = run.state
    payload = {
        "model": run.model.state_dict(),
        "optimiser": run.optimiser.state_dict(),
        "projection": run.projection.state_dict() if run.projection is not None else None,
        "config": asdict(run.config),
        "sampler_rng": run.sampler.rng,
        "generator": run.generator.get_state(),
        "singles_rng": run.singles_rng,
        "torch_rng": torch.get_rng_state(),
        "init_id": run.init_id,
        **asdict(replace(state, elapsed=elapsed)),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def restore(run: Run, path: Path) -> None:
    """Continue `run` from a checkpoint `save` wrote (or an older runs/NAME/last.pt)."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    mine, theirs = asdict(run.config), dict(saved["config"])
    for key in RESUMABLE_CHANGES:
        mine.pop(key, None)
        theirs.pop(key, None)
    if TrainConfig.from_dict(theirs) != TrainConfig.from_dict(mine):
        raise ValueError(f"{path} continues another recipe than {run.config.name!r}; --fresh starts over")
    run.model.load_state_dict(saved["model"])
    if run.projection is not None and saved.get("projection") is not None:
        run.projection.load_state_dict(saved["projection"])
    run.optimiser.load_state_dict(saved["optimiser"])
    run.sampler.rng = saved["sampler_rng"]
    run.generator.set_state(saved["generator"])
    if saved.get("singles_rng") is not None:
        run.singles_rng = saved["singles_rng"]
    if saved.get("torch_rng") is not None:
        torch.set_rng_state(saved["torch_rng"])
    run.init_id = saved.get("init_id", run.init_id)
    known = RunState.__dataclass_fields__
    run.state = RunState(**{k: v for k, v in saved.items() if k in known})
    run.state.sessions += 1


class Session:
    """One process's share of a run: the clock, the progress bar, the resume checkpoints."""

    def __init__(self, run: Run, run_dir: Path, checkpoint_every: float, progress: bool):
        from tqdm import tqdm

        self.run, self.run_dir, self.every = run, Path(run_dir), float(checkpoint_every)
        self.before = run.state.elapsed
        self.started = self.saved = time.time()
        # With steps == 0 the run is budgeted in time, not steps: the cosine schedule follows the
        # fraction of the budget spent, so a machine shared with other work still ends on time
        # with a fully decayed learning rate.
        self.budget = run.config.minutes * 60
        state = run.state
        self.bar = tqdm(total=state.total or None, initial=state.step, disable=not progress, mininterval=10)
        self.bar.set_description(run.config.name)

    def elapsed(self) -> float:
        """Seconds of training so far, all sessions together."""
        return self.before + time.time() - self.started

    def minutes(self) -> float:
        return self.elapsed() / 60

    def progress(self) -> float:
        """0..1 of the run: steps done over steps, or training time over the budget."""
        state = self.run.state
        if state.total:
            return state.step / state.total
        return self.elapsed() / self.budget

    def after_step(self, stats: dict[str, float], finished: bool) -> None:
        """The progress bar, and a resume checkpoint when one is due."""
        state = self.run.state
        self.bar.update(1)
        shown = {"loss": f"{state.running:.4f}"}
        if state.last_val:
            shown["val_acc"] = f"{state.last_val['val_acc']:.3f}"
        if state.step % 20 == 0 or (state.history and state.history[-1]["step"] == state.step):
            self.bar.set_postfix(**shown)
        if not finished and time.time() - self.saved >= self.every:
            save(self.run, resume_path(self.run_dir), self.elapsed())
            self.saved = time.time()

    def close(self) -> None:
        self.bar.close()
        self.run.state.elapsed = self.elapsed()
