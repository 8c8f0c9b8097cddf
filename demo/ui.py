"""The Gradio page, assembled: one module per tab (demo/tabs/), no logic here.

Endpoints (gradio_client): /compare, /enroll, /identify, /people, /remove, /rename; their
JSON shapes are documented in demo/render.py. Errors a user can cause are raised as
gr.Error with a readable message (shown in the page, and as AppError(message) to API
clients); anything else is logged and reported as an internal error, never as a traceback.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from engine import FaceEngine
from index.scopes import SHARED, GalleryScopes, ScopedGallery

from .freshness import DeletionWatch
from .inputs import upload_folder
from .service import Limits, TwinService
from .sessions import ScopedFiles, current_visitor, unloader
from .tabs import TabContext, about, compare, enroll, gallery, identify

#: The tabs, in page order. A new tab is one module with build(ctx) and one line here.
TABS = [compare, enroll, identify, gallery, about]

#: Custom CSS, passed to launch() (Gradio 6 moved it there from Blocks).
LAUNCH_CSS = """
#twin-verdict h2 { margin-top: 0; }
.twin-note { font-size: 0.9em; opacity: 0.85; }
"""


def build_demo(
    engine: FaceEngine,
    gallery: Any,
    thumbnails: bool = True,
    limits: Limits = Limits(),
    scopes: GalleryScopes | None = None,
    files: ScopedFiles | None = None,
) -> gr.Blocks:
    """The whole app as a gr.Blocks; launch it with app.py (which sets the queue and limits).

    scopes: which gallery each request sees (index/scopes.py; default: `gallery`, shared by
    all). The service and the picture files only ever see the caller's own (ScopedGallery,
    ScopedFiles)."""
    scopes = scopes if scopes is not None else GalleryScopes(SHARED, shared=gallery)
    service = TwinService(engine, ScopedGallery(scopes, current_visitor), thumbnails=thumbnails, limits=limits)
    files = files if files is not None else ScopedFiles(upload_folder() / "twin", scopes)
    ctx = TabContext(service, files, engine.model_id, engine.threshold, engine.card, engine.naming.threshold)
    with gr.Blocks(title="Twin: face similarity", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Twin\nAre two photos of the same person? Compare them, or enroll people and find them in new photos."
        )
        with gr.Tabs():
            for tab in TABS:
                tab.build(ctx)
        for wire in ctx.later:
            wire()
        for event in ctx.on_load:
            demo.load(**event)
        if scopes.mode != SHARED:
            # unload needs Gradio's heartbeat stream held open by every page: only where a
            # visitor's own gallery is freed when the page closes (a shared gallery has none)
            demo.unload(unloader(scopes))
    demo.twin_deletion_watch = DeletionWatch(gallery, files)  # type: ignore[attr-defined]  # app.py's middleware
    return demo
