"""Shared fixtures: the real photos in ../shared/data and one FaceEngine for the session.

The photos are read-only public data sets kept outside the project (see shared/data/README.md);
tests build every odd input they need (modes, EXIF, damaged files) from them at run time.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]   # the project is installed (pip install -e ., by make)

from engine.settings import DATA_DIR  # noqa: E402  (TWIN_DATA, or ../shared/data)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data: lfw/<Name>/<Name>_0001.jpg (250x250), att_faces/testing/s5/1.pgm, ..."""
    if not (DATA_DIR / "lfw").is_dir():
        pytest.skip(f"the shared face data is not at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def lfw(data_dir):
    """lfw("George_W_Bush", 2) -> the path of George_W_Bush_0002.jpg."""
    def path(name: str, number: int = 1) -> Path:
        found = data_dir / "lfw" / name / f"{name}_{number:04d}.jpg"
        assert found.is_file(), f"missing test photo {found}"
        return found
    return path


@pytest.fixture(scope="session")
def att(data_dir):
    """att("s6", 1) -> the path of att_faces/testing/s6/1.pgm (92x112 grey)."""
    def path(subject: str, number: int) -> Path:
        found = data_dir / "att_faces" / "testing" / subject / f"{number}.pgm"
        assert found.is_file(), f"missing test photo {found}"
        return found
    return path


@pytest.fixture(scope="session")
def engine():
    """One CPU FaceEngine with the shipped weights, shared by every test (it is thread-safe)."""
    from engine import FaceEngine
    return FaceEngine(device="cpu")


def pytest_runtest_makereport(item, call):
    """In CI (TWIN_CI=1) a skipped test is a failed test: nothing required may quietly skip."""
    import os
    if os.environ.get("TWIN_CI") != "1" or call.excinfo is None:
        return None
    if call.excinfo.errisinstance(pytest.skip.Exception):
        from _pytest.reports import TestReport
        report = TestReport.from_item_and_call(item, call)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test is required: {call.excinfo.value}"
        return report
    return None


#: Modules whose tests start servers or subprocesses, train, or otherwise take seconds each:
#: marked `slow` here, in one place, so `make test-fast` (-m "not slow and not browser") stays
#: under a minute while `make test` runs everything.
SLOW_MODULES = {"test_app", "test_app_hardening", "test_app_gallery_hardening", "test_app_routes",
                "test_browser", "test_cli", "test_deploy_milvus",
                "test_index_cli", "test_index_hardening", "test_gallery_milvus", "test_teacher",
                "test_training", "test_seed", "test_oneshot", "test_engine_hardening_work",
                "test_bulk_enroll", "test_evaluate", "test_quality", "test_milvus_server", "test_milvus_replicas",
                "test_scopes_app", "test_scopes_browser"}
BROWSER_MODULES = {"test_browser", "test_scopes_browser"}
#: Single slow tests in otherwise quick modules (the Milvus Lite runs of the shared gallery
#: behaviour suite are slow too: they start a Milvus Lite server each).
SLOW_TESTS = {"test_switches_to_ivf_above_the_exact_limit_and_back", "test_kill_9_while_enrolling_loses_nothing_that_returned",
              "test_threads_give_the_same_results_as_serial"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS or "milvus" in item.name:
            item.add_marker(pytest.mark.slow)
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """One real Milvus standalone server (the `milvus` package, tests/milvus_server.py) for the
    whole session, started on first use (about 15-60 s) in its own temporary directory on a
    free port, stopped at the end. Tests give their galleries collections of their own."""
    from milvus_server import session_server

    server = session_server(tmp_path_factory.mktemp("milvus-server"))
    yield server
    server.stop(timeout_s=10)  # (a 2.3 standalone can take minutes to finish a SIGTERM: then -9)
