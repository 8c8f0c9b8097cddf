"""index.scopes on real folder galleries and real embeddings of LFW photos: session galleries
are separate, bounded, bound to one browser and freed (at the end, or when idle); user
galleries persist under a hashed folder name; the launch default follows who can reach the app."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from index import open_gallery
from index.scopes import (SESSION, SHARED, USER, GalleryScopes, ScopedGallery, ScopeLimits, ScopeRefused,
                          Visitor, default_scope, user_folder)


@pytest.fixture(scope="module")
def emb(engine, lfw):
    """{"Colin_Powell": embedding, ...}: the main face of one LFW photo each."""
    names = ["Colin_Powell", "Tony_Blair", "George_W_Bush", "Serena_Williams"]
    return {n: engine.faces(lfw(n, 1))[0].embedding for n in names}


def scopes(engine, mode, tmp_path, **kw):
    opener = lambda folder: open_gallery(folder, engine)  # noqa: E731
    limits = kw.pop("limits", ScopeLimits())
    return GalleryScopes(mode, opener, users_root=tmp_path / "g", limits=limits, **kw)


def test_sessions_are_separate_and_freed_when_they_end(engine, emb, tmp_path):
    ended = []
    s = scopes(engine, SESSION, tmp_path, on_end=ended.append)
    a, b = Visitor("aaaa", cookie="ca"), Visitor("bbbb", cookie="cb")
    s.enroll(a, "Colin Powell", emb["Colin_Powell"])
    s.enroll(b, "Tony Blair", emb["Tony_Blair"])
    ga, gb = s.gallery_for(a), s.gallery_for(b)
    assert [p.name for p in ga.people()] == ["Colin Powell"]
    assert [p.name for p in gb.people()] == ["Tony Blair"]
    assert gb.search(emb["Colin_Powell"], k=5)[0].name == "Tony Blair"   # A's exact face is not in B
    folder = ga.directory
    assert s.sessions == 2 and s.end_session("aaaa") and s.sessions == 1
    assert not folder.exists() and ended == [s.key_of(a)]
    assert len(s.gallery_for(a)) == 0                                    # a fresh, empty gallery
    s.close()
    assert s.sessions == 0


def test_a_session_is_bound_to_its_browser(engine, emb, tmp_path):
    s = scopes(engine, SESSION, tmp_path)
    s.enroll(Visitor("aaaa", cookie="ca"), "Colin Powell", emb["Colin_Powell"])
    with pytest.raises(ScopeRefused, match="another browser"):
        s.gallery_for(Visitor("aaaa", cookie="someone-else"))
    with pytest.raises(ScopeRefused, match="no session"):
        s.gallery_for(Visitor(None))
    s.close()


def test_bounds_refuse_in_our_words_and_others_are_still_served(engine, emb, tmp_path):
    s = scopes(engine, SESSION, tmp_path, limits=ScopeLimits(max_sessions=2, max_people=1, max_entries=2))
    a, b, c = Visitor("a"), Visitor("b"), Visitor("c")
    s.enroll(a, "Colin Powell", emb["Colin_Powell"])
    with pytest.raises(ScopeRefused, match="already holds 1 people"):
        s.enroll(a, "Tony Blair", emb["Tony_Blair"])
    s.enroll(a, "Colin Powell", emb["George_W_Bush"])                    # same person: a second photo
    with pytest.raises(ScopeRefused, match="full \\(2 photos"):
        s.enroll(a, "Colin Powell", emb["Serena_Williams"])
    assert len(s.gallery_for(a)) == 2
    s.gallery_for(b)
    with pytest.raises(ScopeRefused, match="as many visitors as it can \\(2\\)"):
        s.gallery_for(c)
    s.enroll(b, "Tony Blair", emb["Tony_Blair"])                         # the others are still served
    assert [p.name for p in s.gallery_for(b).people()] == ["Tony Blair"]
    s.close()


def test_idle_sessions_are_freed_by_the_sweeper(engine, emb, tmp_path):
    s = scopes(engine, SESSION, tmp_path, limits=ScopeLimits(idle_seconds=1.0), sweep_every=0.2)
    s.enroll(Visitor("a"), "Colin Powell", emb["Colin_Powell"])
    folder = s.gallery_for(Visitor("a")).directory
    deadline = time.monotonic() + 10
    while s.sessions and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.sessions == 0 and not folder.exists()
    s.close()


def test_user_galleries_persist_under_a_hashed_folder(engine, emb, tmp_path):
    s = scopes(engine, USER, tmp_path)
    ada, bob = Visitor("x1", user="ada"), Visitor("x2", user="../bob")
    s.enroll(ada, "Colin Powell", emb["Colin_Powell"])
    s.enroll(bob, "Tony Blair", emb["Tony_Blair"])
    assert s.gallery_for(Visitor("x3", user="ada")).people()[0].name == "Colin Powell"  # another session
    anonymous = Visitor("x4")                                            # not signed in: a session gallery
    assert len(s.gallery_for(anonymous)) == 0 and s.sessions == 1
    s.close()
    users = tmp_path / "g" / "users"
    assert sorted(p.name for p in users.iterdir()) == sorted([user_folder("g", "ada").name,
                                                             user_folder("g", "../bob").name])
    assert not any("bob" in p.name or "ada" in p.name for p in users.iterdir())
    again = scopes(engine, USER, tmp_path)                               # a restart: still there
    assert [p.name for p in again.gallery_for(bob).people()] == ["Tony Blair"]
    assert [p.name for p in again.gallery_for(ada).people()] == ["Colin Powell"]
    again.close()


def test_scoped_gallery_resolves_the_caller_on_every_use(engine, emb, tmp_path):
    s = scopes(engine, SESSION, tmp_path)
    who = {"v": Visitor("a")}
    view = ScopedGallery(s, lambda: who["v"])
    view.enroll("Colin Powell", emb["Colin_Powell"])
    assert "Colin Powell" in view and len(view) == 1
    who["v"] = Visitor("b")
    assert "Colin Powell" not in view and len(view) == 0 and view.search(emb["Colin_Powell"]) == []
    assert "deleted when you close" in view.describe()
    s.close()


def test_the_launch_default_follows_who_can_reach_the_app():
    assert default_scope(False, "127.0.0.1", False) == SHARED
    assert default_scope(False, "localhost", False) == SHARED
    assert default_scope(True, "127.0.0.1", False) == SESSION
    assert default_scope(False, "0.0.0.0", False) == SESSION
    assert default_scope(False, "127.0.0.1", True) == SESSION


def test_python_m_index_works_on_a_named_users_gallery(engine, lfw, tmp_path, capsys):
    import io
    import json

    from index.__main__ import main

    root = tmp_path / "g"

    def cli(*args):
        out = io.StringIO()
        code = main(["--gallery", str(root), *map(str, args)], engine=engine, out=out)
        return code, out.getvalue()

    assert cli("--user", "ada", "enroll", "Colin Powell", lfw("Colin_Powell", 1))[0] == 0
    assert cli("--user", "bob", "enroll", "Tony Blair", lfw("Tony_Blair", 1))[0] == 0
    code, listed = cli("--user", "ada", "--json", "list")
    assert code == 0 and [p["name"] for p in json.loads(listed)] == ["Colin Powell"]
    assert cli("--user", "ada", "export", tmp_path / "ada.twin")[0] == 0
    assert cli("--user", "carol", "import", tmp_path / "ada.twin")[0] == 0
    s = scopes(engine, USER, tmp_path)                                    # the app sees what the CLI made
    assert [p.name for p in s.gallery_for(Visitor("x", user="carol")).people()] == ["Colin Powell"]
    assert [p.name for p in s.gallery_for(Visitor("y", user="bob")).people()] == ["Tony Blair"]
    s.close()
    code = main(["--gallery", str(tmp_path / "g.db"), "--user", "ada", "list"], engine=engine)
    assert code == 2 and "needs a folder gallery" in capsys.readouterr().err


def test_a_scopes_pictures_are_only_for_the_browsers_it_served(engine, lfw, tmp_path):
    from PIL import Image

    from demo.sessions import ScopedFiles

    s = scopes(engine, SESSION, tmp_path, on_end=lambda key: files.drop(key))   # as demo.sessions.scoped wires it
    who = {"v": Visitor("a", cookie="cookie-of-browser-a")}
    files = ScopedFiles(tmp_path / "cache", s, lambda: who["v"])
    path = files.picture(Image.open(lfw("Colin_Powell", 1)))
    token = Path(path).relative_to(files.scoped).parts[0]
    assert files.allows(path, "cookie-of-browser-a")
    assert not files.allows(path, "cookie-of-browser-b") and not files.allows(path, None)
    sneaky = files.scoped / "other" / ".." / token / Path(path).relative_to(files.scoped / token)
    assert not files.allows(str(sneaky), "cookie-of-browser-b")          # no way round by ..
    assert files.allows("/etc/hostname", None)                           # not ours: Gradio's own rules
    who["v"] = Visitor("b", cookie="cookie-of-browser-b")
    assert Path(files.picture(Image.open(lfw("Tony_Blair", 1)))).parent.parent.name != token
    s.end_session("a")                                                   # A's session ends: its files go
    assert not Path(path).exists() and not files.allows(path, "cookie-of-browser-a")
    s.close()
