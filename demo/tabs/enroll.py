"""Enroll: add one person from one or more photos. Endpoint /enroll.

After a successful enrollment the form is cleared, so the next person's name is never
enrolled with the previous person's photos.
"""

from __future__ import annotations

import gradio as gr

from index.checks import MAX_NAME_LENGTH
from index.enrollment import summarize

from .. import render
from ..service import UserError
from . import CLEAR, TabContext, api_endpoint, example, guarded, on_page, photo, photos, shown


def build(ctx: TabContext) -> None:
    @guarded
    def enroll(name, files):
        r = ctx.service.enroll(name, photos(files))
        for warning in r.warnings:
            gr.Warning(shown(warning))
        if r.failed:
            raise UserError(r.failure_message())
        text = render.enroll_markdown(r.name, len(r.entries), r.refused, r.warnings, len(r.duplicates))
        shots = [
            (ctx.files.picture(render.crop_image(crop), entry_id=entry), f"{r.name} · entry {entry} · {label}")
            for entry, crop, label in r.entries + r.duplicates
        ]
        return text, shots, render.enroll_payload(r)

    @guarded
    def enroll_zip(file, progress=gr.Progress()):
        def tick(done, total, label):
            progress((done, total), desc=f"{done} of {total} photos", unit="photos")

        summary = summarize(ctx.service.enroll_zip(photo(file, "the zip"), progress=tick))
        return render.bulk_markdown(summary), summary

    def enroll_page(name, files):  # the page clears the form only when something was enrolled
        return *enroll(name, files), "", None

    def enroll_zip_page(file, progress=gr.Progress()):
        return *enroll_zip(file, progress), None

    def refused(message):  # the form keeps what was typed and chosen, to fix and send again
        return render.refusal_markdown(message), None, None, gr.update(), gr.update()

    def refused_zip(message):
        return render.refusal_markdown(message), None, gr.update()

    with gr.Tab("Enroll", id="enroll"):
        gr.Markdown(
            "One or more photos of **one** person, alone in each photo. Photos with no face, "
            "several faces, or a face too small, blurred, dark or turned away are refused (a poor "
            "enrollment makes every later identification worse). Add a second and a third photo of "
            "the person if you can: on people the model never saw, one photo got 62% of them named at 1% "
            "of strangers named, two 73%, three 81%.",
            elem_classes="twin-note",
        )
        name = gr.Textbox(label="Name", max_length=MAX_NAME_LENGTH, elem_id="enroll-name")
        files = gr.File(label="Photos", file_count="multiple", file_types=["image"], elem_id="enroll-photos")
        button = gr.Button("Enroll", variant="primary", elem_id="enroll-button")
        result = gr.Markdown(label="Result", elem_id="enroll-result")
        shots = gr.Gallery(
            label="Entries made", columns=6, height="auto", interactive=False, fit_columns=False, object_fit="contain"
        )
        with gr.Accordion("Details (JSON)", open=False):
            details = gr.JSON(label="Enrollment")
        gr.Examples(
            examples=[["Serena Williams", example("Serena_Williams_0001.jpg")]],
            inputs=[name, files],
            cache_examples=False,
            label="Example: fills the form; press Enroll to add her",
        )
        with gr.Accordion("Many people at once: a zip with one folder per person", open=False):
            gr.Markdown(
                "Zip a folder that holds **one sub-folder per person, named after them**, with their "
                "photos inside (`Ada Lovelace/1.jpg`, `Alan Turing/portrait.png`, ...). At most "
                f"{ctx.service.limits.folder.max_photos} photos and {ctx.service.limits.folder.max_people} "
                "people per zip. Photos already enrolled are skipped, so an interrupted upload can simply "
                "be sent again.",
                elem_classes="twin-note",
            )
            zip_file = gr.File(label="Zip of people", file_count="single", file_types=[".zip"], elem_id="enroll-zip")
            zip_button = gr.Button("Enroll everyone", variant="primary", elem_id="enroll-zip-button")
            zip_result = gr.Markdown(elem_id="enroll-zip-result")
            with gr.Accordion("Details (JSON)", open=False):
                zip_details = gr.JSON(label="Bulk enrollment")

    def wire() -> None:
        api_endpoint(ctx, enroll, [name, files], [result, shots, details], "enroll")
        api_endpoint(ctx, enroll_zip, zip_file, [zip_result, zip_details], "enroll_zip")
        done = button.click(lambda: ["", None, None], None, [result, shots, details], **CLEAR).then(
            on_page(enroll_page, refused),
            [name, files],
            [result, shots, details, name, files],
            api_visibility="private",
        )
        for event in ctx.after_change:
            done = done.then(**event)
        bulk = zip_button.click(lambda: ["", None], None, [zip_result, zip_details], **CLEAR).then(
            on_page(enroll_zip_page, refused_zip),
            zip_file,
            [zip_result, zip_details, zip_file],
            api_visibility="private",
        )
        for event in ctx.after_change:
            bulk = bulk.then(**event)

    ctx.later.append(wire)
