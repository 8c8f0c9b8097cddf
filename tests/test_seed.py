"""The seed's network and recipe (configs/seed.json), and the pair helpers of bench/seed.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import seed as seed_bench
from engine.model import build_model
from training.config import recipe_config
from training.loss import contrastive_loss, pair_distance
from training.metrics import best_threshold_accuracy
from training.objective import batch_loss
from training.pairs import random_pairs
from training.train import lr_at


@pytest.fixture(scope="module")
def seed_net():
    torch.manual_seed(0)
    return build_model(recipe_config("seed").model)


def test_seed_network_maps_one_100x100_grey_image_to_5_numbers(seed_net):
    seed_net.eval()
    with torch.no_grad():
        out = seed_net.embed(torch.rand(3, 1, 100, 100))
    assert out.shape == (3, 5)
    fc = [m for m in seed_net.backbone.fc if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in fc] == [(80000, 500), (500, 500), (500, 5)]
    convs = [m for m in seed_net.backbone.cnn if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 4, (3, 3)), (4, 8, (3, 3)), (8, 8, (3, 3))]
    assert not seed_net.config.normalize, "the seed compared raw outputs"


def test_seed_preprocess_resizes_a_raw_att_photo_to_100x100_grey(seed_net, att):
    from engine.images import load_image
    photo = np.array(load_image(att("s5", 1)))      # 112 x 92, RGB
    x = seed_net.preprocess(photo[None])
    assert photo.shape == (112, 92, 3) and x.shape == (1, 1, 100, 100)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0, "the notebook's ToTensor range, no standardising"


def test_seed_preset_is_64_random_pairs_at_a_constant_learning_rate():
    config = recipe_config("seed")
    assert config.p * config.k == 64 and config.pairs == "random" and config.raw_images
    assert config.schedule == "constant" and config.optimizer == "adam"
    assert lr_at(0, 0.0, config) == lr_at(599, 0.99, config) == 5e-4


def test_contrastive_loss_on_a_batch_of_the_seed_network(seed_net):
    config = recipe_config("seed")
    labels = torch.arange(4).repeat_interleave(4)        # 4 people x 4 photos
    x = torch.rand(16, 1, 100, 100)
    seed_net.train()
    loss, stats = batch_loss(seed_net, x, labels, config, torch.Generator().manual_seed(1))
    # the same pairs again, by hand: L = (1-y) D^2 / 2 + y max(0, 2 - D)^2 / 2
    i, j, y = random_pairs(labels, torch.Generator().manual_seed(1))
    with torch.no_grad():
        e = seed_net.embed(x)   # train mode: BatchNorm uses this batch's statistics, as above
        d = pair_distance(e[i], e[j])
    by_hand = ((1 - y) * 0.5 * d ** 2 + y * 0.5 * torch.clamp(2.0 - d, min=0) ** 2).mean()
    assert torch.isfinite(loss.detach()) and loss.item() > 0
    assert loss.item() == pytest.approx(float(by_hand), rel=1e-4)
    assert float(contrastive_loss(d, y, 2.0)) == pytest.approx(float(by_hand), rel=1e-5)
    loss.backward()
    assert seed_net.backbone.fc[0].weight.grad.abs().sum() > 0


def test_a_few_adam_steps_lower_the_seed_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = build_model(recipe_config("seed").model)
    config = recipe_config("seed")
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    labels = torch.arange(4).repeat_interleave(2)
    x = torch.rand(4, 1, 100, 100).repeat_interleave(2, 0) + 0.05 * torch.rand(8, 1, 100, 100)
    losses = []
    for _ in range(3):
        loss, _ = batch_loss(net, x, labels, config, torch.Generator().manual_seed(0))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_all_pairs_of_the_att_testing_subjects_are_135_same_and_300_different():
    people = [s for s in ("s5", "s6", "s7") for _ in range(10)]
    i, j, same = seed_bench.all_pairs(people)
    assert len(i) == 435 and int(same.sum()) == 135 and int((~same).sum()) == 300
    assert (i < j).all()


def test_the_balanced_threshold_weighs_same_and_different_pairs_alike():
    # 2 same pairs and 8 different ones: plain accuracy would call everything "different"
    d = np.array([0.5, 0.6, 0.55, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3])
    same = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    score, t = best_threshold_accuracy(d, same, balanced=True)   # the seed bench's threshold
    assert 0.6 <= t < 0.7 and score == pytest.approx((1.0 + 7 / 8) / 2)
    plain, t_plain = best_threshold_accuracy(d, same)   # plain accuracy: 9 of 10 right, one same pair lost
    assert plain == pytest.approx(0.9) and t_plain == pytest.approx(0.525)
    s = seed_bench.pair_scores(d, same, t)
    assert s["same_accepted"] == 1.0 and s["different_rejected"] == pytest.approx(7 / 8)
    assert s["accuracy"] == pytest.approx(0.9) and s["pairs"] == 10


def test_embed_raw_gives_5_numbers_per_photo_and_zero_distance_to_itself(seed_net, att):
    paths = [att("s5", 1), att("s6", 1), att("s5", 1)]
    e = seed_bench.embed_raw(seed_net, paths)
    assert e.shape == (3, 5) and np.isfinite(e).all()
    assert np.linalg.norm(e[0] - e[2]) < 1e-5 and np.linalg.norm(e[0] - e[1]) > 0
