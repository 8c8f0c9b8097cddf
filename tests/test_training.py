"""Training: the P x K sampler, mined and random pairs, and a short run that really learns."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.data import Augment, CropSet, PKSampler, known_sets, load_crops, split_by_identity
from engine.model import ModelConfig
from engine.train import PRESETS, TrainConfig, embed_all, mined_pairs, random_pairs, train


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


def test_short_training_lowers_the_loss_and_separates_people(att_people, tmp_path):
    config = TrainConfig(name="test", model=ModelConfig(channels=(8, 16, 32, 32), embedding_size=32, input_size=32),
                         sets=("att_train",), val_fraction=0.0, p=8, k=4, lr=3e-3, warmup_steps=5, steps=80,
                         minutes=0, eval_every=0, threads=1, seed=0)
    torch.manual_seed(0)
    from engine.model import build_model
    before_model = build_model(config.model).eval()
    summary = train(config, out=tmp_path / "m.pt", run_dir=tmp_path, progress=False, data=att_people)
    from engine.model import load_checkpoint
    model, meta = load_checkpoint(tmp_path / "m.pt", device="cpu")
    assert meta["model_id"].startswith("twin-") and meta["train"]["steps"] == 80

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


def test_seed_preset_is_the_notebook_recipe():
    seed = PRESETS["seed"]
    assert (seed.model.input_size, seed.model.in_channels, seed.model.embedding_size) == (100, 1, 5)
    assert (seed.margin, seed.optimizer, seed.lr, seed.pairs) == (2.0, "adam", 5e-4, "random")
    assert seed.sets == ("att_train",)
