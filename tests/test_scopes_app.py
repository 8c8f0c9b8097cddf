"""Gallery scopes on the real app server (python app.py), with real LFW photos.

session scope: two gradio_client sessions (and two browser contexts, in test_scopes_browser.py)
never see each other's people, matches or thumbnails, a thumbnail URL of one answers 404 to the
other; the bounds refuse in our words while others are still served; an idle session is freed.
user scope (--auth-file): two users keep separate galleries across a restart.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from app_server import AppServer, lfw

IDLE = 30  # seconds: --session-idle of the session-scope server
CAP = 5  # --max-sessions


def client(url: str, **kw):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, **kw)


def photo(name: str, number: int = 1):
    from gradio_client import handle_file

    return handle_file(str(lfw(name, number)))


def people(c) -> list[str]:
    return [p["name"] for p in c.predict(api_name="/people")[2]]


def thumbnail_urls(c) -> list[str]:
    """The URLs of the thumbnails the Gallery tab shows this client."""
    return [item["image"]["url"] for item in c.predict(api_name="/people")[1]]


def fetch(url: str, c=None) -> int:
    return httpx.get(url, cookies=(c.cookies if c is not None else None), timeout=30).status_code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("scopes-app"), "--gallery-scope", "session", "--session-idle", str(IDLE),
                    "--max-sessions", str(CAP), "--session-people", "1", "--session-photos", "2")
    yield app
    app.stop()
    folder = re.search(r"session galleries in (\S+)", app.log())
    assert folder is not None and not Path(folder.group(1)).exists()          # a stop deletes them all


@pytest.fixture(scope="module")
def two(server):
    """Two sessions (two gradio_client Clients, each its own cookie), each with one person enrolled."""
    a, b = client(server.url), client(server.url)
    assert a.cookies.get("twin-visitor") and a.cookies != b.cookies
    a.predict("Colin Powell", [photo("Colin_Powell", 1)], api_name="/enroll")
    b.predict("Tony Blair", [photo("Tony_Blair", 1)], api_name="/enroll")
    return a, b


def test_two_sessions_see_only_their_own_people_and_matches(two):
    a, b = two
    assert people(a) == ["Colin Powell"] and people(b) == ["Tony Blair"]
    _, text, details, matches = b.predict(photo("Colin_Powell", 1), api_name="/identify")   # A's exact photo
    assert "Colin Powell" not in text + str(details) + str(matches)
    assert details["faces"][0]["name"] != "Colin Powell"
    _, text, details, _ = a.predict(photo("Colin_Powell", 1), api_name="/identify")
    assert details["faces"][0]["name"] == "Colin Powell"                      # A still finds its own


def test_a_thumbnail_url_of_one_session_is_404_in_another(two):
    a, b = two
    (url,) = thumbnail_urls(a)
    assert fetch(url, a) == 200
    assert fetch(url, b) == 404                                               # another visitor
    assert fetch(url) == 404                                                  # no visitor cookie at all
    assert all(u != url for u in thumbnail_urls(b))


def test_the_bounds_refuse_in_our_words_and_others_are_still_served(two, server):
    from gradio_client.exceptions import AppError

    a, b = two
    with pytest.raises(AppError, match="already holds 1 people"):            # people per session
        a.predict("Tony Blair", [photo("Tony_Blair", 2)], api_name="/enroll")
    a.predict("Colin Powell", [photo("Colin_Powell", 2)], api_name="/enroll")
    with pytest.raises(AppError, match="is full \\(2 photos"):               # photos per session
        a.predict("Colin Powell", [photo("Colin_Powell", 3)], api_name="/enroll")
    assert people(a) == ["Colin Powell"]
    refused, opened = None, []
    for _ in range(CAP + 1):                                                  # sessions at once
        c = client(server.url)
        try:
            people(c)
            opened.append(c)
        except AppError as exc:
            refused = str(exc)
            break
    assert refused is not None and f"as many visitors as it can ({CAP})" in refused
    assert len(opened) <= CAP - 2
    assert people(b) == ["Tony Blair"]                                        # the others are still served


def test_an_idle_session_is_freed_and_its_slot_comes_back(two, server):
    a, _ = two
    url = thumbnail_urls(a)[0]
    deadline = time.monotonic() + IDLE * 4                                   # sessions idle out in batches
    while "idle session galleries (0 left)" not in server.log() and time.monotonic() < deadline:
        time.sleep(2)
    assert "idle session galleries (0 left)" in server.log()
    assert fetch(url, a) == 404                                               # its pictures went with it
    assert people(a) == []                                                    # a fresh, empty gallery
    assert people(client(server.url)) == []                                   # a new visitor is served again


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "users.txt"
    path.write_text("# Twin users\nada:lovelace-1815\n\nbob:../../etc\n")
    return path


def test_user_galleries_are_separate_and_survive_a_restart(tmp_path, auth_file):
    args = ("--gallery-scope", "user", "--auth-file", str(auth_file))
    app = AppServer(tmp_path, *args)
    try:
        ada = client(app.url, auth=("ada", "lovelace-1815"))
        bob = client(app.url, auth=("bob", "../../etc"))
        ada.predict("Colin Powell", [photo("Colin_Powell", 1)], api_name="/enroll")
        bob.predict("Tony Blair", [photo("Tony_Blair", 1)], api_name="/enroll")
        assert people(ada) == ["Colin Powell"] and people(bob) == ["Tony Blair"]
        (url,) = thumbnail_urls(ada)
        assert fetch(url, ada) == 200 and fetch(url, bob) == 404
    finally:
        app.stop()
    folders = sorted(p.name for p in (app.gallery / "users").iterdir())
    assert len(folders) == 2 and not any(n in f for f in folders for n in ("ada", "bob", "etc"))
    app = AppServer(tmp_path, *args)                                          # a restart: same gallery folder
    try:
        ada = client(app.url, auth=("ada", "lovelace-1815"))
        bob = client(app.url, auth=("bob", "../../etc"))
        assert people(ada) == ["Colin Powell"] and people(bob) == ["Tony Blair"]
        _, _, details, _ = bob.predict(photo("Colin_Powell", 1), api_name="/identify")
        assert details["faces"][0]["name"] != "Colin Powell"
        _, _, details, _ = ada.predict(photo("Colin_Powell", 2), api_name="/identify")
        assert details["faces"][0]["name"] == "Colin Powell"
    finally:
        app.stop()
