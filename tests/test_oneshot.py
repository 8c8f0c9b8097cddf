"""One-shot identification: the protocol (training/openset.py) on synthetic embeddings with a known
answer and on real AT&T photos through the engine and a real Gallery; and the benchmark script
(bench/oneshot.py, imported only by the two tests of the script itself)."""
from __future__ import annotations

import numpy as np
import pytest

from training.openset import (
    Split,
    first_photo_split,
    nearest_enrolled,
    open_set_rates,
    random_open_set_splits,
    run_oneshot,
    threshold_at_far,
)


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def basis(i, dim=16):
    v = np.zeros(dim, np.float32)
    v[i] = 1
    return v


def test_first_photo_split_enrolls_the_first_photo_and_keeps_single_photo_people_apart():
    people = ["b", "a", "a", "c", "b", "a"]
    order = ["b/2", "a/3", "a/1", "c/1", "b/1", "a/2"]
    split = first_photo_split(people, order)
    assert [order[i] for i in split.enroll] == ["a/1", "b/1"]
    assert sorted(order[i] for i in split.probes) == ["a/2", "a/3", "b/2"]
    assert [order[i] for i in split.strangers] == ["c/1"]


def test_synthetic_embeddings_give_the_known_answer(tmp_path):
    # six people at the corners e0..e5 (sqrt(2) apart); each has a close second photo, except
    # one photo of p0 that lies nearer p1. Two strangers: one far from everyone, one close to p2.
    people, vectors = [], []
    for p in range(6):
        people += [f"p{p}", f"p{p}"]
        vectors += [basis(p), unit(basis(p) + 0.3 * basis(p + 6))]
    people.append("p0")
    vectors.append(unit(0.6 * basis(0) + basis(1)))         # top-1 is p1, p0 second
    people += ["far stranger", "near stranger"]
    vectors += [basis(14), unit(basis(2) + 0.2 * basis(15))]
    split = first_photo_split(people)
    assert len(split.enroll) == 6 and len(split.probes) == 7 and len(split.strangers) == 2

    result = run_oneshot(np.stack(vectors), people, split, tmp_path / "g", "model-x", threshold=1.0)
    assert result.enrolled == 6
    s = result.summary()
    assert s["queries"] == 7
    assert s["top1"] == pytest.approx(6 / 7) and s["topk"] == 1.0
    confused = list(split.probes).index(12)                # the 13th photo
    assert result.known.names[confused][:2] == ["p1", "p0"]
    # the six close photos are within 1.0 of their own person; the confused one is within 1.0 of p1
    assert s["dir"] == pytest.approx(6 / 7) and s["wrong_within"] == pytest.approx(1 / 7)
    assert result.far() == pytest.approx(1 / 2)             # only the near stranger is matched
    near = [people[i] for i in split.strangers].index("near stranger")
    assert result.strangers.top1[near] == "p2"
    # over the threshold: nothing at 0, everything at 2 (unit vectors are at most 2 apart)
    dir_, far = open_set_rates(result.known.top1_distance, result.known_correct, result.strangers.top1_distance,
                               np.array([0.0, 1.0, 2.0]))
    assert list(far) == [0.0, 0.5, 1.0]
    assert dir_[0] == 0.0 and dir_[2] == pytest.approx(6 / 7)
    assert (np.diff(open_set_rates(result.known.top1_distance, result.known_correct,
                                   result.strangers.top1_distance, np.linspace(0, 2, 50))[1]) >= 0).all()


def test_threshold_at_far_allows_at_most_that_share_of_strangers():
    d = np.array([0.4, 0.1, 0.3, 0.2])
    for target, expected in [(0.0, 0.0), (0.25, 0.25), (0.5, 0.5), (0.6, 0.5)]:
        t = threshold_at_far(d, target)
        assert np.mean(d <= t) == expected, (target, t)
    assert threshold_at_far(d, 1.0) == float("inf")


@pytest.fixture(scope="module")
def att_test_crops(data_dir):
    from training.data import known_sets, load_crops
    return load_crops(known_sets(data_dir)["att_test"], progress=False)


def test_att_testing_subjects_through_the_engine_and_gallery(engine, att_test_crops, tmp_path):
    data = att_test_crops
    people = [data.names[label] for label in data.labels]
    embeddings = engine.embed_crops(data.crops)
    split = first_photo_split(people, data.paths)
    result = run_oneshot(embeddings, people, split, tmp_path / "g", engine.model_id, engine.threshold)
    s = result.summary()
    assert result.enrolled == 3 and s["queries"] == 27 and len(split.strangers) == 0
    assert s["topk"] == 1.0, "with 3 people enrolled, the top 5 always holds the right one"
    assert 0.0 <= s["dir"] <= s["top1"] <= 1.0
    # each enrolled photo queried with itself: rank 1 at distance ~0, whatever the weights
    selves = Split(split.enroll, split.enroll, np.zeros(0, np.int64))
    self_result = run_oneshot(embeddings, people, selves, tmp_path / "g2", engine.model_id, engine.threshold)
    assert self_result.summary()["top1"] == 1.0
    assert np.allclose(self_result.known.top1_distance, 0, atol=1e-3)


def test_random_open_set_splits_enroll_one_photo_of_each_chosen_person_and_keep_the_rest_strangers():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3])
    splits = random_open_set_splits(labels, enrolled=2, splits=5, seed=3)
    assert len(splits) == 5
    for s in splits:
        enrolled_people = set(labels[s.enroll])
        assert len(s.enroll) == 2 and len(enrolled_people) == 2
        assert set(labels[s.probes]) <= enrolled_people and not set(labels[s.strangers]) & enrolled_people
        everything = np.sort(np.concatenate([s.enroll, s.probes, s.strangers]))
        assert list(everything) == list(range(len(labels)))   # every photo has exactly one role
    again = random_open_set_splits(labels, enrolled=2, splits=5, seed=3)
    assert all((a.enroll == b.enroll).all() for a, b in zip(splits, again, strict=True))
    with pytest.raises(ValueError):
        random_open_set_splits(labels, enrolled=4, splits=1)   # no stranger left


def test_nearest_enrolled_gives_what_the_gallery_gives(engine, att_test_crops, tmp_path):
    data = att_test_crops
    people = [data.names[label] for label in data.labels]
    embeddings = engine.embed_crops(data.crops)
    split = random_open_set_splits(people, enrolled=2, splits=1, seed=1)[0]
    known_d, known_ok, stranger_d = nearest_enrolled(embeddings, people, split)
    result = run_oneshot(embeddings, people, split, tmp_path / "g", engine.model_id, engine.threshold)
    assert np.allclose(known_d, result.known.top1_distance, atol=1e-4)
    assert (known_ok == result.known_correct).all()
    assert np.allclose(stranger_d, result.strangers.top1_distance, atol=1e-4)


def test_end_to_end_from_files_matches_each_photo_with_itself(engine, att, tmp_path):
    from bench import oneshot
    photos = [(s, att(s, 1)) for s in ("s5", "s6", "s7")] + [("s5 again", att("s5", 4))]
    t = oneshot.time_end_to_end(engine, photos, photos, tmp_path / "g")
    assert t["enroll_no_face"] == 0 and t["identify_no_face"] == 0 and t["gallery_size"] == 4
    assert t["identified_right"] == 4 and t["enroll_per_s"] > 0 and t["identify_per_s"] > 0


def test_the_script_writes_its_tables(engine, tmp_path, monkeypatch, att_test_crops):
    """The whole script on tiny inputs: AT&T limited to the first 2 people of each of its sets
    (s1, s10; s5, s6), and an "LFW" made of AT&T testing photos where s7 has a single photo (a
    stranger), named through engine.naming and a real Gallery."""
    from bench import oneshot, oneshot_naming

    d = att_test_crops
    people = [d.names[label] for label in d.labels]
    keep = [i for i, p in enumerate(people) if p != "s7" or d.paths[i].endswith("/1.pgm")]
    embeddings = engine.embed_crops(d.crops[keep])

    def fake_lfw(engine):
        return embeddings, [people[i] for i in keep], [d.paths[i] for i in keep], np.ones(len(keep), bool)

    monkeypatch.setattr(oneshot_naming, "lfw_embeddings", fake_lfw)
    monkeypatch.setattr(oneshot_naming, "SIZES", ((1, 3),))
    out = tmp_path / "oneshot.md"
    assert oneshot.main(["--sets", "att", "lfw", "--limit", "2", "--timing-photos", "2", "--device", "cpu",
                         "--out", str(out)]) == 0
    text = out.read_text()
    assert "AT&T, 4-way one-shot" in text and "2 testing subjects" in text and "2 training subjects" in text
    assert "open set through the product path: 2 enrolled, 1 strangers" in text
    assert "raw distance (today's product)" in text and "today (issue 20)" in text
    assert ("against the cohort (shipped)" in text) == engine.naming.normalised
    assert "What the app does at its own thresholds" in text and "photos/s" in text and "limited run" in text
    if engine.naming.normalised:
        assert "queries named as the matrices above say" in text
        agree = text.split("`Gallery.name` (the app's and the CLI's path): ")[1].split(" queries")[0]
        assert agree.split(" of ")[0] == agree.split(" of ")[1], agree
