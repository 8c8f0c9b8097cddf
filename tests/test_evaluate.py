"""The LFW protocol code, on a tiny hand-made pairs file with a known answer."""
from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import fit_calibration, folds_of, parse_pairs, ten_fold_accuracy
from training.metrics import accuracy_at, best_threshold_accuracy, eer, roc_auc, tar_at_far


@pytest.fixture
def pairs_file(tmp_path):
    # 2 folds x (2 same + 2 different), the View 2 layout: header "folds pairs-per-class".
    text = "2\t2\nAnn\t1\t2\nAnn\t3\t4\nAnn\t1\tBob\t1\nCid\t2\tDan\t7\n" \
           "Eve\t1\t2\nFay\t1\t3\nEve\t1\tGus\t12\nHal\t1\tIda\t1\n"
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


def test_parse_pairs_reads_same_and_different_lines(pairs_file):
    pairs = parse_pairs(pairs_file)
    assert len(pairs) == 8
    assert pairs[0].a == "Ann/Ann_0001.jpg" and pairs[0].b == "Ann/Ann_0002.jpg" and pairs[0].same
    assert pairs[3].a == "Cid/Cid_0002.jpg" and pairs[3].b == "Dan/Dan_0007.jpg" and not pairs[3].same
    assert pairs[6].b == "Gus/Gus_0012.jpg"
    assert [p.same for p in pairs] == [True, True, False, False] * 2


def test_folds_are_consecutive_blocks_in_file_order(pairs_file):
    folds = folds_of(pairs_file, 8)
    assert [list(f) for f in folds] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_ten_fold_protocol_fits_on_the_other_folds(pairs_file):
    folds = folds_of(pairs_file, 8)
    same = np.array([p.same for p in parse_pairs(pairs_file)])
    # Fold 1 alone separates at 0.5; fold 2 at 1.5. Fitting on the *other* fold gets it wrong
    # on exactly half of each fold's pairs: the protocol must report 50%, not 100%.
    d = np.array([0.1, 0.2, 0.8, 0.9, 1.1, 1.2, 1.8, 1.9])
    result = ten_fold_accuracy(d, same, folds)
    assert result["folds"] == [0.5, 0.5]
    assert result["mean"] == 0.5 and result["std"] == 0.0
    d_good = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.4, 1.0, 1.1])
    assert ten_fold_accuracy(d_good, same, folds)["mean"] == 1.0


def test_threshold_and_metrics_known_values():
    d = np.array([0.1, 0.3, 0.5, 0.7, 0.4, 0.9])
    same = np.array([True, True, True, False, False, False])
    acc, t = best_threshold_accuracy(d, same)
    assert acc == pytest.approx(5 / 6)
    assert accuracy_at(d, same, t) == pytest.approx(5 / 6)
    assert roc_auc(d, same) == pytest.approx(8 / 9)
    assert tar_at_far(d, same, 0.0) == pytest.approx(2 / 3)
    assert 0 <= eer(d, same) <= 0.34


def test_calibration_is_monotone_and_centred():
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(0.6, 0.1, 500), rng.normal(1.2, 0.1, 500)])
    same = np.arange(1000) < 500
    cal = fit_calibration(d, same)
    assert 0.8 < cal["midpoint"] < 1.0 and cal["slope"] > 5
