"""Identify: who is in this photo, from the gallery. Endpoint /identify."""

from __future__ import annotations

import gradio as gr

from .. import render
from . import CLEAR, TabContext, api_endpoint, example, guarded, on_page, photo
from .compare import SOURCES


def build(ctx: TabContext) -> None:
    @guarded
    def identify(value):
        result = ctx.service.identify(photo(value, "the photo"))
        found, faces = result.photo, result.faces
        rows = render.identify_rows(faces)
        labels = [str(item.number) for item in faces]  # the names are in the table, in the same order
        colours = [render.CHOSEN if item.match else render.STRANGER for item in faces]
        matches = []  # one photo per face, where it helps: the person named, or the closest of an unknown
        for item in faces:
            best = item.match or (item.top[0] if item.top else None)
            thumb = ctx.thumbnail(best.entry_id) if best is not None else None
            if best is not None and thumb is not None:
                matches.append((thumb, f"face {item.number}: {best.name}" + ("" if item.match else " (closest)")))
        drawn = render.draw_faces(
            found.image, [f.face.box for f in faces], labels=labels, colours=colours, max_side=1000
        )
        details = render.identify_payload(rows, found.found, result.threshold, ctx.model_id)
        return ctx.picture(drawn), render.identify_markdown(rows, found.found), details, matches

    def refused(message):
        return None, render.refusal_markdown(message), None, None

    identify_on_page = on_page(identify, refused)

    def identify_example(value):
        return identify_on_page(value)

    with gr.Tab("Identify", id="identify"):
        with gr.Row():
            who_photo = gr.Image(label="Photo", type="filepath", sources=SOURCES, elem_id="identify-photo", height=360)
            who_drawn = gr.Image(label="Faces found", interactive=False, height=360)
        identify_btn = gr.Button("Identify", variant="primary", elem_id="identify-button")
        who_md = gr.Markdown(label="Faces", elem_id="identify-result")
        who_top = gr.Gallery(
            label="Enrolled photo of each face's match (or closest)",
            columns=6,
            height="auto",
            interactive=False,
            fit_columns=False,
            object_fit="contain",
        )
        with gr.Accordion("Details (JSON)", open=False):
            who_json = gr.JSON(label="Faces")
        outputs = [who_drawn, who_md, who_json, who_top]
        gr.Examples(
            examples=[example("Serena_Williams_0002.jpg"), example("two_people.jpg")],
            inputs=who_photo,
            outputs=outputs,
            fn=identify_example,
            run_on_click=True,
            cache_examples=False,
            label="Examples: click one to try it",
        )

    api_endpoint(ctx, identify, who_photo, outputs, "identify", preprocess=False)
    identify_btn.click(lambda: [None, "", None, None], None, outputs, **CLEAR).then(
        identify_on_page, who_photo, outputs, api_visibility="private", preprocess=False
    )
