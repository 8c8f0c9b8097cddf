"""Session scope in a real browser (Playwright + /usr/bin/chromium): two browser contexts on one
app each enroll a different person through the page; neither sees the other's people, matches or
thumbnails, A's thumbnail URL answers 404 in B, and closing A's page deletes A's gallery."""
from __future__ import annotations

import time
from urllib.parse import urljoin

import httpx
import pytest

from app_server import AppServer, lfw
from test_browser import TIMEOUT_MS, _screenshot, browser  # noqa: F401  (the module's Chromium)


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):  # noqa: F811
    app = AppServer(tmp_path_factory.mktemp("scopes-browser"), "--gallery-scope", "session")
    yield app
    app.stop()


def open_page(browser, url):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    return context, page


def enroll(page, name: str, photo) -> None:
    page.get_by_role("tab", name="Enroll").click()
    page.locator("#enroll-name textarea, #enroll-name input").first.fill(name)
    page.locator("#enroll-photos input[type=file]").set_input_files(str(photo))
    page.locator("#enroll-photos").get_by_text("KB").first.wait_for()     # the upload has finished
    page.locator("#enroll-button").click()
    page.locator("#enroll-result").get_by_text("Enrolled 1 photo").wait_for()


def gallery_tab(page, name: str) -> str:
    page.get_by_role("tab", name="Gallery").click()
    page.locator("#gallery-scope").get_by_text("Your own gallery for this visit").wait_for()
    page.locator("#people-table").get_by_text(name).wait_for()
    return page.locator("#people-table").inner_text()


def test_two_browsers_each_see_only_their_own_gallery(browser, server):  # noqa: F811
    context_a, a = open_page(browser, server.url)
    context_b, b = open_page(browser, server.url)
    try:
        enroll(a, "Colin Powell", lfw("Colin_Powell", 1))
        enroll(b, "Tony Blair", lfw("Tony_Blair", 1))
        assert "Tony Blair" not in gallery_tab(a, "Colin Powell")
        assert "Colin Powell" not in gallery_tab(b, "Tony Blair")
        a.locator("img[src*='/thumbs/']").first.wait_for()
        url = urljoin(server.url, a.locator("img[src*='/thumbs/']").first.get_attribute("src"))
        assert context_a.request.get(url).status == 200
        assert context_b.request.get(url).status == 404                     # A's thumbnail, asked by B
        assert b.locator("img[src*='/thumbs/']").count() == 1                 # B sees only its own
        _screenshot(b, "scopes-gallery-b.png")

        b.get_by_role("tab", name="Identify").click()                         # A's exact photo, in B
        b.locator("#identify-photo input[type=file]").set_input_files(str(lfw("Colin_Powell", 1)))
        b.locator("#identify-photo img").first.wait_for()
        b.locator("#identify-button").click()
        result = b.locator("#identify-result")
        result.get_by_text("Found 1 face").wait_for()
        assert "Colin Powell" not in b.locator("#identify-result").inner_text()
        assert "Colin Powell" not in b.content()

        cookies_a = {c["name"]: c["value"] for c in context_a.cookies()}
        context_a.close()                                                     # A leaves: the page unloads
        deadline = time.monotonic() + 60
        while "the page was closed" not in server.log() and time.monotonic() < deadline:
            time.sleep(1)
        assert "the page was closed" in server.log()
        assert httpx.get(url, cookies=cookies_a, timeout=30).status_code == 404   # deleted with A's gallery
    finally:
        context_b.close()
