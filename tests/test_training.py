"""Training: the P x K sampler, mined and random pairs, and a short run that really learns."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.model import ModelConfig
from training.config import NO_AUGMENT, TrainConfig, recipe_config
from training.data import Augment, CropSet, PKSampler, known_sets, load_crops, split_by_identity
from training.pairs import mined_pairs, random_pairs
from training.train import train
from training.validation import embed_all


def test_pk_sampler_yields_p_people_with_k_photos_each():
    labels = np.repeat(np.arange(20), 5)
    labels = np.concatenate([labels, [99]])  # a person with one photo is never drawn
    sampler = PKSampler(labels, p=6, k=3, seed=1)
    for _ in range(50):
        batch = sampler.sample()
        assert batch.shape == (18,)
        people = labels[batch].reshape(6, 3)
        assert (people == people[:, :1]).all(), "each group of K must be one person"
        assert len(set(people[:, 0])) == 6, "P different people per batch"
        assert 99 not in people
        assert all(len(set(batch[i * 3:(i + 1) * 3])) == 3 for i in range(6)), "no repeats when a person has >= K photos"


def test_pk_sampler_refuses_too_few_people():
    with pytest.raises(ValueError):
        PKSampler(np.repeat(np.arange(3), 2), p=4, k=2)


def test_mined_pairs_are_all_positives_and_the_hardest_negatives():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    e = torch.tensor([[0.0, 0], [1, 0], [1.1, 0], [5, 0], [9, 0], [9.5, 0]])
    i, j, y = mined_pairs(e, labels)
    positives = {(int(a), int(b)) for a, b, t in zip(i, j, y) if t == 0}
    assert positives == {(0, 1), (2, 3), (4, 5)}
    negatives = {int(a): int(b) for a, b, t in zip(i, j, y) if t == 1}
    assert negatives[1] == 2 and negatives[2] == 1  # 1.0 and 1.1 are each other's hardest negative
    assert negatives[3] == 2 or negatives[3] == 1
    assert all(labels[a] != labels[b] for a, b in negatives.items())


def test_random_pairs_are_half_same_half_different():
    labels = torch.arange(40).repeat_interleave(4)
    g = torch.Generator().manual_seed(0)
    i, j, y = random_pairs(labels, g)
    assert (i != j).all()
    assert torch.equal(y, (labels[i] != labels[j]).float())
    assert 0.4 < float(y.mean()) < 0.6


def test_split_by_identity_keeps_people_apart():
    data = CropSet(np.zeros((60, 2, 2, 3), np.uint8), np.repeat(np.arange(20), 3), [str(i) for i in range(20)],
                   [str(i) for i in range(60)], np.ones(60, bool))
    tr, va = split_by_identity(data, 0.25, seed=0)
    assert len(va) == 15 and not set(data.labels[tr]) & set(data.labels[va])


def test_augment_keeps_shape_range_and_changes_pixels():
    x = torch.rand(8, 3, 112, 112) * 255
    out = Augment()(x.clone(), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert not torch.allclose(out, x)


@pytest.fixture(scope="module")
def att_people(data_dir):
    """Eight AT&T training subjects, detected and aligned by the engine (cached)."""
    crops = load_crops(known_sets(data_dir)["att_train"], progress=False)
    keep = crops.labels < 8
    return CropSet(crops.crops[keep], crops.labels[keep], crops.names[:8],
                   [p for p, k in zip(crops.paths, keep) if k], crops.found[keep])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_short_training_lowers_the_loss_and_separates_people(att_people, tmp_path, precision):
    """bf16: mixed precision (the forward pass in bfloat16) learns as well, and ships float32 weights."""
    config = TrainConfig(name="test", model=ModelConfig(channels=(8, 16, 32, 32), embedding_size=32, input_size=32),
                         sets=("att_train",), val_fraction=0.0, p=8, k=4, lr=3e-3, warmup_steps=5, steps=80,
                         minutes=0, eval_every=0, threads=1, seed=0, precision=precision)
    torch.manual_seed(0)
    from engine.model import build_model
    before_model = build_model(config.model).eval()
    summary = train(config, out=tmp_path / "m.pt", run_dir=tmp_path, progress=False, data=att_people)
    from engine.model import load_checkpoint
    model, meta = load_checkpoint(tmp_path / "m.pt", device="cpu")
    assert meta["model_id"].startswith("twin-") and meta["train"]["steps"] == 80
    saved = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(t.dtype in (torch.float32, torch.int64) and t.is_contiguous() for t in saved.values())

    def separation(net):
        e = embed_all(net, att_people.crops, config, torch.device("cpu"))
        d = np.linalg.norm(e[:, None] - e[None], axis=2)
        same = att_people.labels[:, None] == att_people.labels[None]
        off = ~np.eye(len(e), dtype=bool)
        return d[same & off].mean(), d[~same].mean()

    same_before, diff_before = separation(before_model)
    same_after, diff_after = separation(model)
    assert same_after < diff_after * 0.6, (same_after, diff_after)
    assert (diff_after - same_after) > (diff_before - same_before) + 0.2
    assert summary["loss_last10"] < 0.6 * summary["loss_first10"], summary


def test_an_unknown_precision_is_refused_with_the_recipe():
    with pytest.raises(ValueError, match="precision must be fp32 or bf16, got 'fp16'"):
        TrainConfig.from_dict({"name": "test", "precision": "fp16"})


def test_seed_recipe_is_the_notebook_recipe():
    seed = recipe_config("seed")
    assert (seed.model.input_size, seed.model.in_channels, seed.model.embedding_size) == (100, 1, 5)
    assert (seed.margin, seed.optimizer, seed.lr, seed.pairs) == (2.0, "adam", 5e-4, "random")
    assert seed.sets == ("att_train",)


# -- distillation from the teacher's targets ------------------------------------------------------

def test_direct_distillation_loss_by_hand():
    from training.loss import direct_distillation_loss
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # 0 for the first row, |(-1, 1)|^2 = 2 for the second: mean 1
    assert direct_distillation_loss(s, t).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        direct_distillation_loss(s, torch.zeros(2, 3))


def test_relational_distillation_matches_the_shape_of_the_distance_matrix():
    from training.loss import relational_distillation_loss
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    assert relational_distillation_loss(t, t).item() == pytest.approx(0.0, abs=1e-8)
    # Any scale and any size: only the proportions of the distances count.
    padded = torch.cat([3 * t, torch.zeros(3, 5)], dim=1)
    assert relational_distillation_loss(padded, t).item() == pytest.approx(0.0, abs=1e-8)
    # Distances (1, 2, sqrt 5) vs (1, 1, sqrt 2), each over its mean, squared differences averaged.
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ds = np.array([1, 2, np.sqrt(5)]) / np.mean([1, 2, np.sqrt(5)])
    dt = np.array([1, 1, np.sqrt(2)]) / np.mean([1, 1, np.sqrt(2)])
    assert relational_distillation_loss(s, t).item() == pytest.approx(float(np.mean((dt - ds) ** 2)), rel=1e-5)


def fake_teacher_file(folder, crops, seed=0):
    """A tiny fake target file for a set's real crop cache, where training looks for it:
    one random direction per person, each photo a little off it, L2-normalised."""
    from training.data import crop_cache_file, save_npz_atomic, teacher_targets_path
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(len(crops.names), 128))
    t = directions[crops.labels] + 0.3 * rng.normal(size=(len(crops), 128))
    t = (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)
    path = teacher_targets_path(crop_cache_file(folder))
    save_npz_atomic(path, paths=np.array(crops.paths), embedding=t, plain=t, found=crops.found)
    return t


@pytest.fixture
def teacher_dir(tmp_path, monkeypatch):
    import training.data
    monkeypatch.setattr(training.data, "TEACHER_DIR", tmp_path / "teacher")
    return tmp_path / "teacher"


def distill_config(**changes):
    base = TrainConfig(name="distill-test", model=ModelConfig(channels=(8, 16, 32, 32), embedding_size=32, input_size=32),
                       sets=("att_train",), val_fraction=0.0, p=6, k=3, lr=3e-3, warmup_steps=5, steps=40,
                       minutes=0, eval_every=0, threads=1, seed=0, distill_weight=1.0, relational_weight=1.0,
                       augment=NO_AUGMENT)  # the fake targets are per photo: a few steps show the fall clearly
    return replace(base, **changes)


def test_distillation_loss_falls_with_targets_read_from_the_cache(data_dir, teacher_dir, tmp_path):
    """Real crops, a tiny fake target file: both distillation terms fall in a few steps, through
    a projection (the student's 32-d embedding vs the teacher's 128), with single-photo people
    in every batch (distillation only) beside the P x K part."""
    from training.inputs import load_targets
    folder = known_sets(data_dir)["att_train"]
    full = load_crops(folder, progress=False)
    fake_teacher_file(folder, full)
    config = distill_config(singles_per_batch=4)
    targets_full = load_targets(config)
    assert targets_full.shape == (len(full), 128)
    # Ten people with all their photos, four more with a single photo each.
    keep = np.flatnonzero(full.labels < 10)
    singles = np.array([np.flatnonzero(full.labels == p)[0] for p in range(10, 14)])
    rows = np.concatenate([keep, singles])
    data = CropSet(full.crops[rows], full.labels[rows], full.names, [full.paths[i] for i in rows], full.found[rows])
    summary = train(config, out=tmp_path / "m.pt", run_dir=tmp_path, progress=False, data=data,
                    targets=targets_full[rows])
    first, last = summary["terms_first10"], summary["terms_last10"]
    assert set(first) == {"contrastive", "distill", "relational"}
    assert last["distill"] < 0.7 * first["distill"], (first, last)
    assert last["relational"] < 0.6 * first["relational"], (first, last)
    assert summary["images_seen"] == 40 * (6 * 3 + 4)
    # The projection is training-only: the checkpoint holds the student alone.
    from engine.model import load_checkpoint
    model, meta = load_checkpoint(tmp_path / "m.pt", device="cpu")
    assert all(k.startswith("backbone.") for k in model.state_dict())
    assert meta["train"]["config"]["distill_weight"] == 1.0


def test_same_size_student_is_pulled_toward_the_teacher_directly(att_people, teacher_dir, tmp_path):
    from training.objective import make_projection
    config = distill_config(model=ModelConfig(channels=(8, 16, 32, 32), embedding_size=128, input_size=32),
                            relational_weight=0.0, steps=25)
    assert make_projection(config, 128) is None
    assert make_projection(distill_config(), 128) is not None
    rng = np.random.default_rng(0)
    t = rng.normal(size=(8, 128))[att_people.labels] + 0.3 * rng.normal(size=(len(att_people), 128))
    t = (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)
    summary = train(config, run_dir=tmp_path, out=tmp_path / "m.pt", progress=False, data=att_people, targets=t)
    assert set(summary["terms_first10"]) == {"contrastive", "distill"}
    assert summary["terms_last10"]["distill"] < 0.8 * summary["terms_first10"]["distill"]


def test_distillation_without_targets_fails_clearly_and_plain_training_needs_none(att_people, teacher_dir, tmp_path):
    from training.data import TeacherTargetsMissing
    with pytest.raises(TeacherTargetsMissing, match="make teacher"):
        train(distill_config(), run_dir=tmp_path / "r", progress=False, data=att_people)
    assert not (tmp_path / "r").exists(), "nothing is written before the targets are found"
    with pytest.raises(ValueError, match="singles_per_batch"):
        train(distill_config(distill_weight=0.0, relational_weight=0.0, singles_per_batch=4), run_dir=tmp_path / "r",
              progress=False, data=att_people)
    summary = train(distill_config(distill_weight=0.0, relational_weight=0.0, steps=3), run_dir=tmp_path / "s",
                    out=tmp_path / "s.pt", progress=False, data=att_people)
    assert summary["steps"] == 3 and set(summary["terms_first10"]) == {"contrastive"}


def test_cli_reports_missing_targets_in_one_line(teacher_dir, capsys, monkeypatch):
    import training.train as train_mod
    from training.data import TeacherTargetsMissing

    def no_targets(config, **kwargs):
        assert config.distill_weight == 2.0 and config.singles_per_batch == 16
        raise TeacherTargetsMissing("distillation needs the teacher's targets ... `make teacher`")

    monkeypatch.setattr(train_mod, "train", no_targets)
    assert train_mod.main(["--distill-weight", "2", "--singles-per-batch", "16", "--steps", "1"]) == 2
    assert "make teacher" in capsys.readouterr().err


def test_a_recipe_says_whether_it_needs_the_teacher(capsys):
    """`make train` asks the recipe (python -m training.recipes needs-teacher NAME) whether to run
    `make teacher` first: exactly the recipes that distill."""
    from training.recipes import CONFIGS, main, needs_teacher, resolve

    names = [str(p.relative_to(CONFIGS).with_suffix("")) for p in sorted(CONFIGS.rglob("*.json"))]
    for name in names:
        assert needs_teacher(name) == TrainConfig.from_dict(resolve(name)).distills, name
    assert needs_teacher("teacher") and needs_teacher("teacher-finetune") and not needs_teacher("shipped")
    assert main(["needs-teacher", "teacher"]) == 0 and main(["needs-teacher", "default"]) == 1
    assert main(["needs-teacher", "no-such-recipe"]) == 2 and "No recipe" in capsys.readouterr().err


def test_recipes_are_files_over_a_base():
    """configs/ are the recipes (no second copy in code): default is TrainConfig's defaults, the
    others a few keys over a base."""
    from training.recipes import ablations, about, resolve

    defaults = TrainConfig()
    assert TrainConfig.from_dict(resolve("default")) == defaults
    assert recipe_config("default") == replace(defaults, recipe="default")
    seed = TrainConfig.from_dict(resolve("seed"))
    assert seed.model.arch == "seed" and seed.augment == NO_AUGMENT and seed.raw_images
    assert TrainConfig.from_dict(resolve("shipped")).minutes == 110
    tuned = TrainConfig.from_dict(resolve("teacher-finetune"))
    assert tuned.distill_weight == 2.0 and tuned.margin == 0.6 and tuned.init == "engine/weights/twin.pt"
    assert tuned.p == 42 and tuned.model == defaults.model        # the rest from its base
    assert TrainConfig.from_dict(resolve("teacher-scratch")).init is None
    grey = TrainConfig.from_dict(resolve("ablations/grey"))
    assert grey.model.in_channels == 1 and grey.model.input_size == defaults.model.input_size
    assert "ablations/grey" in ablations() and about("ablations/grey")


# -- resuming an interrupted run -------------------------------------------------------------------

def test_an_interrupted_run_resumes_where_it_stopped(data_dir, tmp_path):
    """`python -m training.train` killed (-9) mid-run, then started again with the same recipe:
    the step count goes on from the last resume checkpoint and the run ends with the weights of
    an uninterrupted run (same machine, one thread); the checkpoint is gone once the run ends."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from engine.model import load_checkpoint

    load_crops(known_sets(data_dir)["att_train"], progress=False)  # the crop cache the runs read
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps({
        "base": "defaults", "name": "resume-test", "sets": ["att_train"], "val_fraction": 0.2, "p": 6, "k": 3,
        "model": {"channels": [8, 16, 32, 32], "embedding_size": 32, "input_size": 32}, "lr": 0.003,
        "warmup_steps": 5, "steps": 120, "minutes": 0, "eval_every": 40, "threads": 1}))

    def command(run_dir, *extra):
        return [sys.executable, "-m", "training.train", "--config", str(recipe), "--run-dir", str(run_dir),
                "--out", str(run_dir / "model.pt"), *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(command(whole), check=True, env=env, capture_output=True, timeout=600)
    state_file = broken / "resume.pt"
    run = subprocess.Popen(command(broken, "--checkpoint-minutes", "0"), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stopped_at = 0
    try:
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:
            if state_file.is_file():
                stopped_at = torch.load(state_file, map_location="cpu", weights_only=False)["step"]
                if stopped_at >= 50:                      # after the first validation, before the end
                    run.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
    assert 50 <= stopped_at < 120 and state_file.is_file() and not (broken / "model.pt").exists()
    saved = torch.load(state_file, map_location="cpu", weights_only=False)
    assert saved["step"] >= stopped_at and saved["sessions"] == 1

    resumed = subprocess.run(command(broken), check=True, env=env, capture_output=True, text=True, timeout=600)
    summary = json.loads((broken / "summary.json").read_text())
    assert summary["steps"] == 120 and summary["sessions"] == 2, resumed.stdout
    assert [row["step"] for row in summary["history"]] == [40, 80, 120]   # each step counted once
    assert not state_file.exists()
    expected = json.loads((whole / "summary.json").read_text())
    assert "sessions" not in expected
    assert summary["model_id"] == expected["model_id"]     # the same weights, bit for bit
    assert summary["final_loss"] == pytest.approx(expected["final_loss"])
    assert [row["val_acc"] for row in summary["history"]] == [row["val_acc"] for row in expected["history"]]
    model, meta = load_checkpoint(broken / "model.pt", device="cpu")
    assert meta["train"]["steps"] == 120 and meta["model_id"] == expected["model_id"]


def test_a_resume_checkpoint_of_another_recipe_is_refused(att_people, tmp_path):
    config = distill_config(distill_weight=0.0, relational_weight=0.0, steps=4)
    from training.run import resume_path, save, start_run

    run = start_run(config, att_people, None, "cpu", None, None)
    save(run, resume_path(tmp_path), elapsed=1.0)
    with pytest.raises(ValueError, match="continues another recipe"):
        train(replace(config, margin=0.5), run_dir=tmp_path, out=tmp_path / "m.pt", progress=False, data=att_people)
    summary = train(replace(config, margin=0.5), run_dir=tmp_path, out=tmp_path / "m.pt", progress=False,
                    data=att_people, fresh=True)
    assert summary["steps"] == 4 and not resume_path(tmp_path).exists()
