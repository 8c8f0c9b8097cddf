"""The three-state verdict (issue 12, item 4): "same", "not sure", "different".

The band itself (engine.verdict; fitted by training.thresholds), how FaceEngine reads it from the model card (with a
fallback), and what compare() returns on real photos.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from engine import DIFFERENT, NOT_SURE, SAME, VERDICTS, Comparison, FaceEngine, VerdictBand
from engine.model import DEFAULT_WEIGHTS
from engine.verdict import band_from_calibration
from training.thresholds import band_stats, fit_band, fit_logistic


def test_band_gives_three_verdicts_edges_included_on_the_sure_side():
    band = VerdictBand(0.8, 1.0)
    assert band.verdict(0.0) == SAME
    assert band.verdict(0.8) == SAME            # low itself: same (as same means distance <= threshold)
    assert band.verdict(0.80001) == NOT_SURE
    assert band.verdict(1.0) == NOT_SURE        # high itself: still not sure
    assert band.verdict(1.00001) == DIFFERENT
    assert band.verdict(2.0) == DIFFERENT
    assert band.verdict(float("nan")) == NOT_SURE
    assert VERDICTS == (SAME, NOT_SURE, DIFFERENT) == ("same", "not sure", "different")


@pytest.mark.parametrize("card", [
    {},
    {"verdict_band": None},
    {"verdict_band": "narrow"},
    {"verdict_band": {"low": 0.5}},
    {"verdict_band": {"low": "a", "high": 1.0}},
    {"verdict_band": {"low": 0.95, "high": 1.1}},          # does not hold the threshold 0.9
    {"verdict_band": {"low": 0.7, "high": float("inf")}},
])
def test_unusable_card_bands_are_ignored(card):
    assert VerdictBand.from_card(card, threshold=0.9) is None


def test_card_band_is_read():
    band = VerdictBand.from_card({"verdict_band": {"low": 0.8, "high": 1.05, "source": "val"}}, threshold=0.9)
    assert band == VerdictBand(0.8, 1.05, "val")


def test_fallback_band_comes_from_the_calibration_slope():
    band = band_from_calibration(0.9, slope=15.0)
    margin = math.log(9) / 15.0
    assert band.low == pytest.approx(0.9 - margin) and band.high == pytest.approx(0.9 + margin)
    # where the logistic with that slope, centred on the threshold, is 0.9 and 0.1
    assert 1 / (1 + math.exp(15.0 * (band.low - 0.9))) == pytest.approx(0.9)
    assert band_from_calibration(0.9, slope=float("nan")).low < 0.9 < band_from_calibration(0.9, 0.0).high


def test_logistic_fit_recovers_known_parameters():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.2, 1.6, 20000)
    p = 1 / (1 + np.exp(12.0 * (d - 0.9)))
    same = rng.random(len(d)) < p
    slope, midpoint = fit_logistic(d, same)
    assert slope == pytest.approx(12.0, rel=0.08)
    assert midpoint == pytest.approx(0.9, abs=0.01)


def test_fit_band_holds_the_threshold_and_reports_what_it_does():
    rng = np.random.default_rng(1)
    d = np.concatenate([rng.normal(0.7, 0.12, 1000), rng.normal(1.15, 0.12, 1000)])
    same = np.arange(2000) < 1000
    band, stats = fit_band(d, same, threshold=0.93)
    assert band.low <= 0.93 <= band.high
    assert stats["share_same"] + stats["share_not_sure"] + stats["share_different"] == pytest.approx(1.0)
    assert stats["sure_accuracy"] > 0.95
    # a threshold outside the logistic's band widens the band to hold it
    far, _ = fit_band(d, same, threshold=1.5)
    assert far.high == pytest.approx(1.5)
    assert band_stats(VerdictBand(0.0, 5.0), d, same)["share_not_sure"] == 1.0


def test_shipped_card_has_a_band_around_the_threshold(engine):
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    band = card["verdict_band"]
    assert band["low"] < card["threshold"] < band["high"]
    assert "validation" in band["source"] and "LFW" in band["source"]  # says it was not fitted on LFW
    assert engine.verdict_band == VerdictBand(band["low"], band["high"], band["source"])


def test_engine_verdict_follows_the_band(engine):
    band = engine.verdict_band
    assert band.low < engine.threshold < band.high
    assert engine.verdict(band.low - 0.01) == SAME
    assert engine.verdict(engine.threshold) == NOT_SURE
    assert engine.verdict(band.high + 0.01) == DIFFERENT


def test_engine_without_a_band_in_its_card_falls_back(tmp_path):
    weights = tmp_path / "twin.pt"
    shutil.copyfile(DEFAULT_WEIGHTS, weights)
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    card.pop("verdict_band", None)
    weights.with_suffix(".json").write_text(json.dumps(card))
    engine = FaceEngine(weights, device="cpu")
    expected = band_from_calibration(engine.threshold, card["calibration"]["slope"])
    assert engine.verdict_band == expected
    assert engine.verdict_band.source.startswith("fallback")


def test_compare_carries_a_verdict_consistent_with_same(engine, lfw):
    pairs = [(lfw("George_W_Bush", 1), lfw("George_W_Bush", 1)),     # itself: distance ~0
             (lfw("George_W_Bush", 1), lfw("George_W_Bush", 2)),
             (lfw("George_W_Bush", 1), lfw("Colin_Powell", 1)),
             (lfw("Tony_Blair", 1), lfw("Serena_Williams", 1))]
    seen = set()
    for a, b in pairs:
        result = engine.compare(a, b)
        assert isinstance(result, Comparison)
        assert result.verdict in VERDICTS
        assert result.verdict == engine.verdict(result.distance)
        assert result.band == engine.verdict_band
        if result.verdict == SAME:
            assert result.same is True
        if result.verdict == DIFFERENT:
            assert result.same is False
        seen.add(result.verdict)
    assert engine.compare(pairs[0][0], pairs[0][1]).verdict == SAME
    assert DIFFERENT in seen


def test_a_comparison_made_without_a_band_keeps_the_two_way_verdict(engine, lfw):
    face = engine.faces(lfw("George_W_Bush", 1))[0]
    assert Comparison(0.1, True, 0.99, face, face, 0.9).verdict == SAME
    assert Comparison(1.5, False, 0.01, face, face, 0.9).verdict == DIFFERENT
    assert Comparison(0.1, True, 0.99, face, face, 0.9).warnings == []


# -- fitting the band, and the card written after training ------------------------------------------

def test_validation_band_is_fitted_on_held_out_people(engine, data_dir):
    from training.data import known_sets, load_crops
    from training.thresholds import validation_band
    load_crops(known_sets(data_dir)["att_train"], progress=False)  # the crop cache, built when missing
    entry = validation_band(engine, data_dir=data_dir, sets=("att_train",), fraction=0.25, seed=0)
    assert entry["low"] <= engine.threshold <= entry["high"]
    assert entry["fit"]["pairs"] > 100 and "never LFW" in entry["source"] and "att_train" in entry["source"]
    assert VerdictBand.from_card({"verdict_band": entry}, engine.threshold) is not None
    # a new threshold (a new card's) is what the band must hold
    assert validation_band(engine, threshold=1.4, data_dir=data_dir, sets=("att_train",), fraction=0.25)["high"] >= 1.4
    with pytest.raises(ValueError, match="no validation people"):
        validation_band(engine, data_dir=data_dir, sets=("att_train",), fraction=0.0)


def card_result(card: dict) -> dict:
    """What training.evaluate.evaluate() returns, rebuilt from a card (write_card's input)."""
    return {**card["lfw"], "model_id": card["model_id"], "threshold": card["threshold"],
            "calibration": card["calibration"]}


def test_the_card_written_after_training_carries_the_band(engine, tmp_path, monkeypatch):
    from training import evaluate, thresholds
    weights = tmp_path / "twin.pt"
    shutil.copyfile(DEFAULT_WEIGHTS, weights)
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    # a band holding the card's threshold (the engine refuses one that does not)
    low, high = round(card["threshold"] - 0.2, 3), round(card["threshold"] + 0.1, 3)
    fitted = {"low": low, "high": high, "source": "validation people (test)", "fit": {"share_not_sure": 0.25}}
    seen = {}

    def fake_band(eng, threshold=None, **kwargs):
        seen["threshold"] = threshold
        return fitted
    monkeypatch.setattr(thresholds, "validation_band", fake_band)
    result = card_result(card)
    result["verdict_band"] = evaluate.fit_verdict_band(engine, 0.93)
    assert seen["threshold"] == 0.93  # the new card's threshold, not the engine's old one
    evaluate.write_card(weights, result, engine.meta)
    written = json.loads(weights.with_suffix(".json").read_text())
    assert written["verdict_band"] == fitted and "verdict_band_note" in written
    assert FaceEngine(weights, device="cpu").verdict_band == VerdictBand(low, high, "validation people (test)")


def test_a_card_written_without_validation_data_falls_back(engine, tmp_path, monkeypatch):
    from training import evaluate, thresholds
    weights = tmp_path / "twin.pt"
    shutil.copyfile(DEFAULT_WEIGHTS, weights)

    def no_data(*args, **kwargs):
        raise FileNotFoundError("no crop cache")
    monkeypatch.setattr(thresholds, "validation_band", no_data)
    result = card_result(json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text()))
    result["verdict_band"] = evaluate.fit_verdict_band(engine, result["threshold"])
    assert result["verdict_band"] is None
    evaluate.write_card(weights, result, engine.meta)
    reread = FaceEngine(weights, device="cpu")
    assert reread.verdict_band.source.startswith("fallback") and reread.verdict_band.low < reread.threshold
