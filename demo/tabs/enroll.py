"""Enroll: add one person from one or more photos. Endpoint /enroll.

After a successful enrollment the form is cleared, so the next person's name is never
enrolled with the previous person's photos.
"""
from __future__ import annotations

import gradio as gr

from .. import render
from ..service import UserError
from . import CLEAR, TabContext, example, guarded, photos, shown


def build(ctx: TabContext) -> None:
    @guarded
    def enroll(name, files):
        r = ctx.service.enroll(name, photos(files))
        for warning in r.warnings:
            gr.Warning(shown(warning))
        if r.failed:
            raise UserError(r.failure_message())
        text = render.enroll_markdown(r.name, len(r.entries), r.refused, r.warnings, len(r.duplicates))
        shots = [(ctx.files.picture(render.crop_image(crop), entry_id=entry), f"{r.name} · entry {entry} · {label}")
                 for entry, crop, label in r.entries + r.duplicates]
        return text, shots, render.enroll_payload(r)

    with gr.Tab("Enroll", id="enroll"):
        gr.Markdown("One or more photos of **one** person, alone in each photo. Photos with no face "
                    "or several faces are refused.", elem_classes="twin-note")
        name = gr.Textbox(label="Name", max_length=100, elem_id="enroll-name")
        files = gr.File(label="Photos", file_count="multiple", file_types=["image"], elem_id="enroll-photos")
        button = gr.Button("Enroll", variant="primary", elem_id="enroll-button")
        result = gr.Markdown(label="Result", elem_id="enroll-result")
        shots = gr.Gallery(label="Entries made", columns=6, height="auto", interactive=False,
                           fit_columns=False, object_fit="contain")
        with gr.Accordion("Details (JSON)", open=False):
            details = gr.JSON(label="Enrollment")
        gr.Examples(examples=[["Serena Williams", example("Serena_Williams_0001.jpg")]],
                    inputs=[name, files], cache_examples=False,
                    label="Example: fills the form; press Enroll to add her")

    def wire() -> None:
        done = button.click(lambda: ["", None, None], None, [result, shots, details], **CLEAR).then(
            enroll, [name, files], [result, shots, details], api_name="enroll")
        done.success(lambda: ("", None), None, [name, files], **CLEAR)
        for event in ctx.after_change:
            done = done.then(**event)

    ctx.later.append(wire)
