"""About: the model card, how accurate the model is, and what happens to the photos."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from .. import render
from . import TabContext

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"

PRIVACY = """
### Privacy
- **Compare and Identify** keep nothing: the photos are processed in memory; the uploaded
  copies Gradio keeps are deleted within two hours, and on every restart. The pictures the app
  draws for you are removed within an hour.
- **Enroll** stores, in the gallery on the server, the **name** you typed, the face's
  **embedding** (a list of numbers computed from the face) and, unless the app runs with
  `--no-thumbnails`, a small **thumbnail** of the aligned face. The photo itself is not kept.
- **Deleting**: the *Gallery* tab deletes one entry or everyone's entries under a name; the
  embedding and thumbnail are removed with it, and the thumbnail's web address stops working
  at once. Deleting the gallery folder deletes everything.
- The gallery is shared by everyone who can open this app. Enroll only people who agreed to it.
- No analytics or telemetry are sent; nothing is kept in your browser's run history.
"""


def build(ctx: TabContext) -> None:
    with gr.Tab("About", id="about"):
        gr.Markdown(render.card_markdown(ctx.card, ctx.model_id, ctx.threshold))
        roc = RESULTS / "roc.png"
        if roc.is_file():
            gr.Image(value=str(roc), label="ROC on LFW", interactive=False, height=420)
        oneshot = RESULTS / "oneshot.md"
        if oneshot.is_file():
            gr.Markdown("### One-shot identification\n\n" + oneshot.read_text(encoding="utf-8"))
        gr.Markdown(PRIVACY)
