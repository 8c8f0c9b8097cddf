"""The identification threshold (engine/identification.py reads it, training/thresholds.py fits it): the
FAR(N) model, the fit on real
photos (its false-alarm rate, measured again through a real Gallery, is at most the target), the
card entry, and how FaceEngine reads it or falls back without it."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from engine.identification import IdentificationThreshold
from training.openset import random_open_set_splits, run_oneshot
from training.thresholds import (
    far_at_gallery_size,
    fit_identification_threshold,
    identification_card_entry,
    impostor_rate,
    per_comparison_rate,
)

ENTRY = {"value": 0.45, "target_far": 0.01, "reference_gallery_size": 2000, "source": "validation people",
         "note": "FAR grows with N"}


def test_far_grows_with_the_number_of_people_enrolled():
    p = 1e-4
    fars = far_at_gallery_size(p, np.array([1, 10, 100, 1000, 10000]))
    assert fars[0] == pytest.approx(p) and (np.diff(fars) > 0).all()
    assert fars[2] == pytest.approx(1 - (1 - p) ** 100)
    for n in (1, 77, 2000):
        assert far_at_gallery_size(per_comparison_rate(0.01, n), n) == pytest.approx(0.01)
    assert per_comparison_rate(0.01, 2000) < per_comparison_rate(0.01, 100)


def test_the_impostor_rate_weighs_each_other_person_as_one_enrolled_photo():
    # person 0: one photo at the origin; person 1: two photos, one at distance 1, one at distance 3
    e = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    rate = impostor_rate(e, np.array([0, 1, 1]))
    # query 0 (weight 1/3) against person 1's photos (1/2 each): within 1 -> 1/6; queries 1 and 2
    # (1/3 each) against person 0's single photo: within 1 -> query 1 -> 1/3
    assert float(rate(1.0)) == pytest.approx(1 / 6 + 1 / 3)
    assert float(rate(3.0)) == pytest.approx(1.0) and float(rate(0.5)) == 0.0
    # the largest t with p(t) <= target: just below 1 for 0.4 (p jumps to 1/2 at 1), just below 3 for 1/2
    assert 0.99 < rate.empirical_threshold(0.4)[0] < 1.0
    assert 2.99 < rate.empirical_threshold(0.5)[0] < 3.0


@pytest.fixture(scope="module")
def att_everyone(engine, data_dir):
    """All 40 AT&T people (training and testing), 10 real photos each, embedded by the engine."""
    from training.data import known_sets, load_crops
    sets = known_sets(data_dir)
    people, crops = [], []
    for name in ("att_train", "att_test"):
        data = load_crops(sets[name], progress=False)
        people += [data.names[label] for label in data.labels]
        crops.append(data.crops)
    return engine.embed_crops(np.concatenate(crops)), np.array(people)


@pytest.mark.slow
def test_the_fitted_threshold_names_at_most_the_target_share_of_strangers(att_everyone, engine, tmp_path):
    embeddings, people = att_everyone
    target, splits = 0.01, 4
    entry = fit_identification_threshold(embeddings, people, target_far=target, reference_gallery_size=20,
                                         splits=splits, seed=0, described_as="AT&T")
    value, fit = entry["value"], entry["fit"]
    assert entry["target_far"] == target and entry["reference_gallery_size"] == 20
    assert 0 < value <= 2 and "AT&T" in entry["source"] and "N=" in entry["note"]
    assert fit["simulation"]["gallery_size"] == 20 and fit["simulation"]["far_at_value"] <= target
    # measured again, independently: the same splits through a real Gallery
    alarms, strangers = 0, 0
    for i, split in enumerate(random_open_set_splits(people, 20, splits, seed=0)):
        result = run_oneshot(embeddings, list(people), split, tmp_path / f"g{i}", engine.model_id, value, k=1)
        alarms += int((result.strangers.top1_distance <= value).sum())
        strangers += len(split.strangers)
    assert strangers == splits * 200 and alarms / strangers <= target
    # and the model agrees at the reference size
    assert far_at_gallery_size(impostor_rate(embeddings, people).smooth(value), 20) <= target * (1 + 1e-9)
    # a larger gallery needs a stricter threshold, a looser target a laxer one
    larger = fit_identification_threshold(embeddings, people, target_far=target, reference_gallery_size=2000,
                                          splits=splits, seed=0)
    looser = fit_identification_threshold(embeddings, people, target_far=0.1, reference_gallery_size=20,
                                          splits=splits, seed=0)
    assert larger["value"] <= value <= looser["value"]
    far_by_n = larger["fit"]["model"]["far_by_gallery_size_at_value"]
    assert target * 0.9 < far_by_n["2000"] <= target and far_by_n["10"] < far_by_n["1000"] < target
    json.dumps(entry)   # the card entry is plain JSON


def test_a_fit_needs_strangers():
    with pytest.raises(ValueError):
        fit_identification_threshold(np.eye(2, dtype=np.float32), np.array([0, 1]))


@pytest.mark.parametrize("card", [
    {},
    {"identification_threshold": None},
    {"identification_threshold": "0.5"},
    {"identification_threshold": {"target_far": 0.01}},
    {"identification_threshold": {"value": "a"}},
    {"identification_threshold": {"value": float("nan")}},
    {"identification_threshold": {"value": 0.0}},
    {"identification_threshold": {"value": 2.5}},
])
def test_an_unusable_card_entry_is_refused(card):
    assert IdentificationThreshold.from_card(card) is None


def test_a_card_entry_is_read():
    got = IdentificationThreshold.from_card({"identification_threshold": ENTRY})
    assert got == IdentificationThreshold(0.45, 0.01, 2000, "validation people", "FAR grows with N")
    assert not got.fallback and got.as_dict() == ENTRY


def test_the_fallback_is_the_verdict_bands_lower_end_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="engine.identification"):
        got = IdentificationThreshold.fallback_for(0.93, band_low=0.77)
    assert got.fallback and got.value == 0.77 and got.target_far is None and "fallback" in got.source
    assert "no identification_threshold" in caplog.text
    # no band below the threshold: the verification threshold itself
    assert IdentificationThreshold.fallback_for(0.93, band_low=None).value == 0.93
    assert IdentificationThreshold.fallback_for(0.93, band_low=1.0).value == 0.93


def test_the_engine_reads_the_shipped_card(engine):
    from engine.model import DEFAULT_WEIGHTS
    entry = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())["identification_threshold"]
    assert isinstance(engine.identification_threshold, float)
    assert engine.identification_threshold == entry["value"] and not engine.identification.fallback
    assert engine.identification.target_far == entry["target_far"] == 0.01
    assert engine.identification.reference_gallery_size == entry["reference_gallery_size"]
    assert engine.identification_threshold < engine.threshold, "naming must be stricter than verifying"
    assert "never LFW" in entry["source"]


def test_the_engine_falls_back_without_the_card_entry(engine, tmp_path, caplog):
    from engine import FaceEngine
    from engine.model import DEFAULT_WEIGHTS
    weights = tmp_path / "twin.pt"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    del card["identification_threshold"]
    weights.with_suffix(".json").write_text(json.dumps(card))
    with caplog.at_level(logging.WARNING, logger="engine.identification"):
        other = FaceEngine(weights, device="cpu", detector=engine.detector)
    assert other.identification.fallback and "no identification_threshold" in caplog.text
    assert other.identification_threshold == other.verdict_band.low < other.threshold
    # with the entry written back, it is read
    card["identification_threshold"] = ENTRY
    weights.with_suffix(".json").write_text(json.dumps(card))
    assert FaceEngine(weights, device="cpu", detector=engine.detector).identification_threshold == 0.45


def test_the_card_writer_carries_the_entry(tmp_path):
    from training.evaluate import write_card
    lfw = {k: 0.0 for k in ("view2_10fold", "view2_accuracy_at_threshold", "view1_accuracy_at_threshold", "roc_auc",
                             "eer", "tar_at_far_1e-2", "tar_at_far_1e-3", "no_face_photos", "photos", "no_face_rate")}
    result = {"model_id": "twin-x", "threshold": 0.9, "calibration": {"slope": 10.0, "midpoint": 0.9}, **lfw,
              "verdict_band": None, "identification_threshold": ENTRY}
    card = json.loads(write_card(tmp_path / "w.pt", result, {}).read_text())
    assert card["identification_threshold"] == ENTRY


class _NoValidationPeople:
    meta = {"train": {"config": {"val_fraction": 0}}}


def test_card_entry_is_none_when_training_held_out_nobody(capsys):
    assert identification_card_entry(_NoValidationPeople()) is None
    assert "not fitted" in capsys.readouterr().err


def test_a_small_gallery_names_within_a_looser_threshold_than_a_large_one():
    from engine.identification import IdentificationThreshold

    card = {"identification_threshold": {"value": 0.43, "target_far": 0.01, "reference_gallery_size": 2000,
            "fit": {"model": {"threshold_by_gallery_size_at_target": {"10": 0.64, "100": 0.54, "1000": 0.46,
                                                                       "2000": 0.43, "10000": 0.36}}}}}
    it = IdentificationThreshold.from_card(card)
    assert it.for_gallery(1) == pytest.approx(0.64) and it.for_gallery(10) == pytest.approx(0.64)
    assert it.for_gallery(100) == pytest.approx(0.54) and it.for_gallery(2000) == pytest.approx(0.43)
    assert 0.54 > it.for_gallery(300) > 0.46 and it.for_gallery(10**6) == pytest.approx(0.36)
    assert IdentificationThreshold(0.5).for_gallery(7) == 0.5         # no fitted sizes: the one value
