"""About: the model card, how accurate the model is, and what happens to the photos."""

from __future__ import annotations

import gradio as gr

from engine.settings import MODEL_CARD, RESULTS_DIR

from .. import card
from . import TabContext

RESULTS = RESULTS_DIR
CARD_FILE = MODEL_CARD

PRIVACY = """
## Privacy
- **Compare and Identify** keep nothing: the photos are processed in memory; the uploaded
  copies Gradio keeps are deleted within two hours, and on every restart. The pictures the app
  draws for you are removed within an hour.
- **Enroll** stores, in the gallery on the server, the **name** you typed, the face's
  **embedding** (a list of numbers computed from the face) and, unless the app runs with
  `--no-thumbnails`, a small **thumbnail** of the aligned face. The photo itself is not kept.
- **Deleting**: the *Gallery* tab deletes one entry or everyone's entries under a name; the
  embedding and thumbnail are removed with it, and the thumbnail's web address stops working
  at once. Deleting the gallery folder deletes everything.
- Whose gallery it is, and how long it keeps faces, is said just below. Enroll only people who
  agreed to it.
- No analytics or telemetry are sent; nothing is kept in your browser's run history.
"""


#: The terms of this page a newcomer will not know, one line each.
GLOSSARY = """
## Words used on this page
- **LFW** (Labeled Faces in the Wild): 13,233 public news photos of 5,749 people; used here only to
  measure the model, never to train it.
- **View 1**: LFW's small development part (pairsDevTrain and pairsDevTest), the only part of LFW
  used to choose anything: the verification threshold.
- **pairsDevTrain**: View 1's 2,200 photo pairs (1,100 of the same person, 1,100 of two people).
- **View 2**: LFW's 6,000 test pairs in 10 folds, on which the accuracy is reported.
- **ROC curve**: how many true pairs are accepted (up) against how many false pairs are (right) as
  the threshold moves.
- **FAR** (false accept rate): how often a stranger is named as someone enrolled.
- **DIR** (detection and identification rate): how often an enrolled person is found and named rightly.
"""


def build(ctx: TabContext) -> None:
    with gr.Tab("About", id="about"), gr.Column(elem_id="about-page"):
        gr.Markdown(card.model_section(ctx.card, ctx.model_id))
        gr.Markdown(card.data_section(ctx.card))
        gr.Markdown(card.accuracy_section(ctx.card, ctx.threshold))
        for name, label in (  # one per row, at the page's full width: readable
            ("roc.png", "Verification on LFW: ROC curve"),
            (
                "oneshot_openset.png",
                "Identification: strangers named (FAR) and people found (DIR) as the threshold moves",
            ),
        ):
            if (RESULTS / name).is_file():
                gr.Image(
                    value=str(RESULTS / name),
                    label=label,
                    interactive=False,
                    buttons=[],
                    elem_classes="about-plot",
                )
        normalised = ctx.service.engine.naming.normalised
        gr.Markdown(card.threshold_section(ctx.card, ctx.threshold, ctx.identification, normalised))
        gr.Markdown(card.limits_section(ctx.card))
        gr.Markdown(GLOSSARY)
        gr.Markdown(PRIVACY)
        scope_line = gr.Markdown(elem_id="about-scope")
        ctx.on_load.append(dict(fn=ctx.service.scope_line, outputs=scope_line, api_visibility="private", queue=False))
        with gr.Accordion("The full model card (JSON)", open=False):
            gr.JSON(value=ctx.card, label="engine/weights/twin.json")
            if CARD_FILE.is_file():
                gr.DownloadButton("Download the model card", value=str(CARD_FILE), size="sm")
