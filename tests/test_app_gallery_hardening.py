"""Issue 19 (round 3), the gallery's rows against the real app (app.py in a subprocess, one for
the module): deletion from another process (row 10), the people list in pages (row 12), zips
that cannot be read (row 13), entry numbers in ASCII digits (row 14) and look-alike names
(row 8). Each test here failed on the code before this round (see the CHANGELOG).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from app_server import DATA, ROOT, AppServer, lfw

pytestmark = pytest.mark.skipif(not (DATA / "lfw").is_dir(), reason=f"no LFW photos in {DATA}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("gallery-hard"))
    yield app
    app.stop()


def call(url: str, endpoint: str, data: list, timeout: float = 120.0) -> tuple[str, object]:
    """Gradio's documented HTTP API: POST the data, then read the event stream: (event, data)."""
    url = url.rstrip("/")
    with httpx.Client(timeout=timeout) as http:
        posted = http.post(f"{url}/gradio_api/call/{endpoint}", json={"data": data})
        if posted.status_code != 200:
            return f"http {posted.status_code}", posted.text
        event, payload = "", None
        with http.stream("GET", f"{url}/gradio_api/call/{endpoint}/{posted.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    text = line.split(":", 1)[1].strip()
                    return event, json.loads(text) if text and text != "null" else None
    return event, None


def upload(server: AppServer, path: Path, name: str = "photo.jpg") -> dict:
    posted = httpx.post(f"{server.url.rstrip('/')}/gradio_api/upload",
                        files={"files": (name, path.read_bytes(), "application/octet-stream")})
    return {"path": posted.json()[0], "meta": {"_type": "gradio.FileData"}}


def enroll(server: AppServer, name: str, photo: Path) -> tuple[str, object]:
    return call(server.url, "enroll", [name, [upload(server, photo)]])


def cli(server: AppServer, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "index", "--gallery", str(server.gallery), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


# -- row 10: `python -m index remove` in another process ---------------------------------------
def test_a_removal_by_the_cli_stops_the_thumbnails_at_once(server):
    event, (_, shots, details) = enroll(server, "Gen Person", lfw("Colin_Powell", 3))
    assert event == "complete", details
    event, (_, covers, *_) = call(server.url, "people", [])      # the first page, as before
    urls = [c["image"]["url"] for c in covers if "Gen Person" in (c.get("caption") or "")]
    urls += [s["image"]["url"] for s in shots]
    assert len(urls) == 2 and [httpx.get(u).status_code for u in urls] == [200, 200]
    done = cli(server, "remove", "Gen Person")
    assert done.returncode == 0, done.stderr
    # no one opened the people list: the next file request itself finds the entry gone
    assert [httpx.get(u).status_code in (403, 404) for u in urls] == [True, True]


# -- row 12: the people list pages ------------------------------------------------------------
def test_the_people_list_comes_a_page_at_a_time(server, engine):
    """Before: every /people call listed everyone (1,000,000 entries: 6 s and 8 MB a call)."""
    from index import open_gallery

    base = engine.faces(str(lfw("Hugo_Chavez", 1)))[0].embedding
    rng = np.random.default_rng(7)
    with open_gallery(server.gallery, engine) as g:           # another process's writes, as the CLI's
        for i in range(120):
            g.enroll(f"Page Person {i:03d}", base + rng.normal(0, 0.05, base.shape).astype(np.float32))
    event, (table, _, first, names) = call(server.url, "people_page", ["1", "Page Person"])
    assert event == "complete" and len(first) == 50
    assert [p["name"] for p in first] == [f"Page Person {i:03d}" for i in range(50)]
    assert "People 1-50 of 120 (page 1 of 3)" in table and len(names["choices"]) == 50
    event, (table, _, last, _) = call(server.url, "people_page", [3, "Page Person"])
    assert [p["name"] for p in last] == [f"Page Person {i:03d}" for i in range(100, 120)]
    assert "page 3 of 3" in table
    event, (table, _, past, _) = call(server.url, "people_page", [9, "Page Person"])
    assert event == "complete" and past == [] and "past the last page" in table
    event, (table, _, first_page, _) = call(server.url, "people", [])      # /people: the first page
    assert len(first_page) == 50 and "of 12" in table
    for bad in ("\u00b2", "\u0661", "0", "-1", "two"):
        event, payload = call(server.url, "people_page", [bad, ""])
        assert event == "error" and "page must be a whole number" in json.dumps(payload), (bad, payload)


# -- row 13: zips that cannot be read ---------------------------------------------------------
def test_a_damaged_zip_member_is_reported_not_an_internal_error(server, tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("Zip Ann/1.jpg", lfw("Gerhard_Schroeder", 2).read_bytes())
        archive.writestr("Zip Bob/1.jpg", lfw("Serena_Williams", 2).read_bytes())
    data = bytearray(out.getvalue())
    data[data.find(b"Zip Bob/1.jpg") + 2000] ^= 0xFF             # a bad CRC in Bob's photo
    path = tmp_path / "people.zip"
    path.write_bytes(bytes(data))
    event, payload = call(server.url, "enroll_zip", [upload(server, path, "people.zip")])
    assert event == "complete", payload
    summary = payload[1]
    assert summary["enrolled"] == 1
    assert [(r["photo"], "checksum" in r["reason"]) for r in summary["refused"]] == [("Zip Bob/1.jpg", True)]


# -- row 14: numbers are ASCII digits ---------------------------------------------------------
DIGITS = {"Arabic-Indic": "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
          "superscript": "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",
          "full-width": "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"}


@pytest.mark.parametrize("family", list(DIGITS))
def test_an_entry_number_in_other_digits_is_refused_clearly(server, family):
    """Before: "\u0661" deleted entry 1, "\u00b2" was an internal error."""
    event, payload = enroll(server, f"Digit Person {family}", lfw("Hugo_Chavez", 2 + list(DIGITS).index(family)))
    assert event == "complete", payload
    entry = payload[2]["entries"][0]["entry_id"]
    typed = str(entry).translate(str.maketrans("0123456789", DIGITS[family]))
    event, payload = call(server.url, "remove", ["", typed])
    assert event == "error" and "by its number" in json.dumps(payload), payload
    assert cli(server, "--json", "list", "--entries").stdout.count(f'"entry_id": {entry},') == 1


# -- row 8: look-alike names, through enroll and rename ---------------------------------------
@pytest.mark.parametrize("typed", ["T\u043eny Blair", "Tony\u3164Blair", "Tony\u034f Blair", "Tony\u2800Blair"])
def test_a_name_like_an_enrolled_one_is_refused_by_enroll_and_rename(server, typed):
    if "Tony Blair" not in cli(server, "list").stdout:
        assert enroll(server, "Tony Blair", lfw("Tony_Blair", 1))[0] == "complete"
        assert enroll(server, "Colin Powell", lfw("Colin_Powell", 1))[0] == "complete"
    event, payload = enroll(server, typed, lfw("Tony_Blair", 2))
    assert event == "error" and ("looks like" in json.dumps(payload) or "invisible" in json.dumps(payload))
    event, payload = call(server.url, "rename", ["Colin Powell", typed])
    assert event == "error" and ("looks like" in json.dumps(payload) or "invisible" in json.dumps(payload))
    names = [p["name"] for p in json.loads(cli(server, "--json", "list").stdout)]
    assert "Colin Powell" in names and "Tony Blair" in names and typed not in names
