"""Teacher targets (training/teacher.py) without dlib: a fake encoder stands in for it.

What is tested is everything around the encoder: the fixed box, the stored views, shards that
resume and are shared between processes, atomic assembly keyed by the crop cache's bytes,
and the report through training.evaluate's LFW protocol. That nothing of the product imports
the teacher, dlib or any training code: tests/test_layering.py.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import training.data as data_mod
from training import teacher as teacher_mod
from training.data import (
    CropSet,
    TeacherTargetsMissing,
    crop_cache_file,
    known_sets,
    load_crops,
    load_teacher_targets,
    teacher_targets_path,
)
from training.evaluate import parse_pairs
from training.dlib_teacher import BOX, RECIPE, box_pixels, targets_of, unit
from training.teacher import SetJob, parse_shard, row_order
from training.teacher_report import lfw_report, write_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def teacher_dir(tmp_path, monkeypatch):
    """Teacher targets go to a temporary folder (the real .cache/teacher is left alone)."""
    folder = tmp_path / "teacher"
    monkeypatch.setattr(data_mod, "TEACHER_DIR", folder)
    monkeypatch.setattr(teacher_mod, "TEACHER_DIR", folder)
    return folder


class FakeEncoder:
    """Stands in for dlib: a fixed random projection of the downsampled crop (and its mirror)."""

    def __init__(self, seed: int = 0):
        self.w = np.random.default_rng(seed).normal(size=(8 * 8 * 3, 128)).astype(np.float32)
        self.calls = 0

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        small = crops[:, ::14, ::14].astype(np.float32) / 255
        mirror = crops[:, ::14, ::-1][:, :, ::14].astype(np.float32) / 255
        return small.reshape(len(crops), -1) @ self.w, mirror.reshape(len(crops), -1) @ self.w


@pytest.fixture(scope="module")
def att_train(data_dir):
    folder = known_sets(data_dir)["att_train"]
    return folder, load_crops(folder, progress=False)


def test_box_is_the_fixed_fraction_of_the_crop_side():
    assert BOX == (0.277, 0.897, 0.987, 0.098)
    left, top, right, bottom = box_pixels(224)
    assert (left, top, right, bottom) == (22, 62, 201, 221)
    assert 0 <= left < right <= 224 and 0 <= top < bottom <= 224
    assert RECIPE["upscale"] == 2


def test_stored_views_are_unit_and_the_target_is_mirror_averaged():
    rng = np.random.default_rng(0)
    raw, raw_mirror = rng.normal(size=(5, 128)) * 3, rng.normal(size=(5, 128))
    views = targets_of(raw, raw_mirror)
    for name in ("embedding", "plain"):
        assert views[name].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(views[name], axis=1), 1, atol=1e-5)
    expected = unit(unit(raw) + unit(raw_mirror))
    np.testing.assert_allclose(views["embedding"], expected, atol=1e-6)
    np.testing.assert_allclose(views["plain"], unit(raw), atol=1e-6)
    np.testing.assert_allclose(views["raw"], raw.astype(np.float32))


def test_shard_option():
    assert parse_shard("0/1") == (0, 1) and parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(Exception):
            parse_shard(bad)


def test_shards_resume_are_shared_and_assemble_row_for_row(att_train, teacher_dir):
    folder, crops = att_train
    crop_file = crop_cache_file(folder)
    encoder = FakeEncoder()
    job = SetJob("att_train", folder, crops, crop_file, shard_size=64)
    assert len(job.shards) == -(-len(crops) // 64) >= 4
    with pytest.raises(TeacherTargetsMissing, match="make teacher"):
        load_teacher_targets(folder, crops)
    # Process 0 of 2 takes shards 0, 2, 4, ...: the set is not complete, nothing is assembled.
    assert job.run(encoder, shard=(0, 2), log=lambda m: None) is False
    assert not job.final.exists()
    done, total = job.progress()
    assert 0 < done < total
    calls = encoder.calls
    # While a live process holds the lock of shards 1/2, a second one leaves them alone; a
    # lock whose process is gone is taken over.
    lock = job.parts / "lock-1-2"
    lock.write_text(str(os.getpid()))
    assert job.run(encoder, shard=(1, 2), log=lambda m: None) is False and encoder.calls == calls
    lock.write_text("999999999")
    assert job.lock((1, 2)) == lock and lock.read_text() == str(os.getpid())
    lock.unlink()
    # Resuming process 0 embeds nothing again.
    assert job.run(encoder, shard=(0, 2), log=lambda m: None) is False and encoder.calls == calls
    # A time limit already past stops before embedding anything.
    assert job.run(encoder, shard=(1, 2), log=lambda m: None, stop_after=time.time() - 1) is False
    assert encoder.calls == calls
    # Process 1 of 2 finishes the rest and assembles the set's file; the parts are gone.
    assert job.run(encoder, shard=(1, 2), log=lambda m: None) is True
    assert job.final == teacher_targets_path(crop_file) and job.final.is_file()
    assert not job.parts.exists() and job.done()
    assert not list(teacher_dir.rglob("*.tmp*"))
    targets = load_teacher_targets(folder, crops)
    plain = load_teacher_targets(folder, crops, "plain")
    raw, raw_mirror = FakeEncoder()(crops.crops)
    expected = targets_of(raw, raw_mirror)
    np.testing.assert_allclose(targets, expected["embedding"], atol=1e-5)
    np.testing.assert_allclose(plain, expected["plain"], atol=1e-5)
    with np.load(job.final) as z:
        assert json.loads(str(z["recipe"])) == RECIPE
        assert list(z["paths"]) == list(crops.paths)
        assert z["seconds"].shape == (len(crops),)
    # Done means done: another run embeds nothing.
    assert job.run(encoder, log=lambda m: None) is True and encoder.calls == calls + len(job.shards) // 2


def test_targets_are_keyed_by_the_crop_cache_bytes(tmp_path, teacher_dir):
    crop_file = tmp_path / "att_train-0123456789ab.npz"
    crop_file.write_bytes(b"one version of the crops")
    first = teacher_targets_path(crop_file)
    assert first.parent == teacher_dir and first.name.startswith("att_train-")
    assert teacher_targets_path(crop_file) == first
    time.sleep(0.01)
    crop_file.write_bytes(b"the crops, rebuilt differently")
    assert teacher_targets_path(crop_file) != first


def test_targets_that_do_not_match_the_crops_are_refused(att_train, teacher_dir):
    folder, crops = att_train
    path = teacher_targets_path(crop_cache_file(folder))
    data_mod.save_npz_atomic(path, paths=np.array(crops.paths[::-1]),
                             embedding=np.zeros((len(crops), 128), np.float32))
    with pytest.raises(ValueError, match="row for row"):
        load_teacher_targets(folder, crops)


def test_lfw_report_uses_the_protocol_and_pair_photos_come_first(data_dir, tmp_path, teacher_dir):
    lfw = data_dir / "lfw"
    needed = sorted({p for f in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt")
                     for pair in parse_pairs(lfw / f) for p in (pair.a, pair.b)})
    others = ["Zz_Nobody/Zz_Nobody_0001.jpg", "Zz_Nobody/Zz_Nobody_0002.jpg"]
    paths = others + needed  # photos outside the pairs come first in the set ...
    people = sorted({p.split("/")[0] for p in paths})
    labels = np.array([people.index(p.split("/")[0]) for p in paths])
    # Each crop carries its person's number in its pixels; the fake teacher maps people to
    # well separated directions, photos of one person to nearly the same one.
    crops = np.zeros((len(paths), 2, 2, 3), np.uint8)
    crops[:, 0, 0, 0], crops[:, 0, 0, 1] = labels % 256, labels // 256
    crops[:, 1, 1, 2] = np.arange(len(paths)) % 7
    cropset = CropSet(crops, labels, people, paths, np.ones(len(paths), bool))
    directions = np.random.default_rng(1).normal(size=(len(people), 128))

    def encoder(batch):
        person = batch[:, 0, 0, 0].astype(int) + 256 * batch[:, 0, 0, 1].astype(int)
        noise = batch[:, 1, 1, 2][:, None] * 0.01
        return directions[person] + noise, directions[person] - noise

    crop_file = tmp_path / "lfw-000000000000.npz"
    crop_file.write_bytes(b"fake lfw crops")
    job = SetJob("lfw", known_sets(data_dir)["lfw"], cropset, crop_file, shard_size=1000, data_dir=data_dir)
    order = row_order("lfw", cropset, data_dir)
    assert set(order[:len(needed)]) == set(range(2, len(paths)))  # ... but are embedded last
    with pytest.raises(RuntimeError, match="not embedded yet"):
        lfw_report(job, lfw)
    assert job.run(encoder, log=lambda m: None)
    result = lfw_report(job, lfw)
    for view in ("embedding", "plain", "raw"):
        assert result["views"][view]["view2_10fold"]["mean"] == 1.0
        assert len(result["views"][view]["view2_10fold"]["folds"]) == 10
    assert result["photos"] == len(needed)
    out = tmp_path / "teacher.md"
    write_report(result, out, [job])
    text = out.read_text()
    assert "100.00% ± 0.00" in text and "| lfw |" in text
