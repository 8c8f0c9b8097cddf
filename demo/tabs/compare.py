"""Compare: two photos, one verdict. Endpoint /compare."""

from __future__ import annotations

from typing import Literal

import gradio as gr

from .. import render
from . import CLEAR, TabContext, api_endpoint, example, guarded, on_page, photo

SOURCES: list[Literal["upload", "webcam", "clipboard"]] = ["upload", "webcam", "clipboard"]


def build(ctx: TabContext) -> None:
    @guarded
    def compare(photo_a, photo_b, face_a=None, face_b=None):
        r = ctx.service.compare(photo(photo_a, "photo A"), photo(photo_b, "photo B"), face_a, face_b)
        c = r.comparison
        n_a, n_b = r.photo_a.found, r.photo_b.found
        details = render.compare_payload(c, r.used_a, r.used_b, n_a, n_b, ctx.model_id)
        band = (c.band.low, c.band.high) if c.band is not None else None
        score_a, score_b = ((details[k] or {}).get("score") for k in ("quality_a", "quality_b"))
        text = render.compare_markdown(
            c.verdict,
            c.distance,
            c.similarity,
            c.threshold,
            n_a,
            n_b,
            r.used_a,
            r.used_b,
            band=band,
            warnings=c.warnings,
            qualities=(score_a, score_b),
        )
        boxed = [
            ctx.picture(render.draw_faces(p.image, [f.box for f in p.faces], chosen=used - 1, max_side=800))
            for p, used in ((r.photo_a, r.used_a), (r.photo_b, r.used_b))
        ]
        return (
            text,
            details,
            ctx.picture(render.side_by_side(c.face_a.crop, c.face_b.crop)),
            *boxed,
            gr.update(value=r.used_a, visible=len(r.photo_a.faces) > 1, maximum=len(r.photo_a.faces)),
            gr.update(value=r.used_b, visible=len(r.photo_b.faces) > 1, maximum=len(r.photo_b.faces)),
        )

    def refused(message):  # the verdict area says why; the face boxes keep what was typed
        return (render.refusal_markdown(message), None, None, None, None, gr.update(), gr.update())

    compare_on_page = on_page(compare, refused)

    def compare_example(photo_a, photo_b):
        return compare_on_page(photo_a, photo_b)

    def reset_face():
        return gr.update(value=None, visible=False)

    with gr.Tab("Compare", id="compare"):
        with gr.Row():
            with gr.Column():
                photo_a = gr.Image(label="Photo A", type="filepath", sources=SOURCES, elem_id="photo-a", height=320)
                face_a = gr.Number(
                    label="Face in photo A", value=None, precision=0, minimum=1, visible=False, elem_id="face-a"
                )
            with gr.Column():
                photo_b = gr.Image(label="Photo B", type="filepath", sources=SOURCES, elem_id="photo-b", height=320)
                face_b = gr.Number(
                    label="Face in photo B", value=None, precision=0, minimum=1, visible=False, elem_id="face-b"
                )
        examples_slot = gr.Column()  # filled below, once the outputs exist
        compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-button")
        verdict = gr.Markdown(label="Verdict", elem_id="twin-verdict")
        pair = gr.Image(
            label="Aligned faces (A | B): what the model compares",
            interactive=False,
            height=240,
            elem_id="aligned-pair",
        )
        with gr.Row():
            boxed_a = gr.Image(label="Photo A, face used in green", interactive=False)
            boxed_b = gr.Image(label="Photo B, face used in green", interactive=False)
        with gr.Accordion("Details (JSON)", open=False):
            compare_json = gr.JSON(label="Comparison", elem_id="compare-json")
        outputs = [verdict, compare_json, pair, boxed_a, boxed_b, face_a, face_b]
        with examples_slot:
            gr.Examples(  # one click fills both photos and runs the comparison
                examples=[
                    example("Serena_Williams_0001.jpg", "Serena_Williams_0002.jpg"),
                    example("Serena_Williams_0001.jpg", "Angelina_Jolie_0001.jpg"),
                    example("two_people.jpg", "Tony_Blair_0001.jpg"),
                ],
                example_labels=["Same person, two photos", "Two different people", "A photo with two faces"],
                inputs=[photo_a, photo_b],
                outputs=outputs,
                fn=compare_example,
                run_on_click=True,
                cache_examples=False,
                label="Examples: click one to try it",
            )

    inputs = [photo_a, photo_b, face_a, face_b]
    api_endpoint(ctx, compare, inputs, outputs, "compare", preprocess=False)
    compare_btn.click(lambda: [""] + [None] * 4, None, outputs[:5], **CLEAR).then(
        compare_on_page, inputs, outputs, api_visibility="private", preprocess=False
    )
    for box, image in ((face_a, photo_a), (face_b, photo_b)):
        image.change(reset_face, None, box, **CLEAR)
        box.input(compare_on_page, inputs, outputs, api_visibility="private", preprocess=False)
