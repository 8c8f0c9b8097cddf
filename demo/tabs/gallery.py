"""Gallery: everyone enrolled, a page at a time, and the two changes (rename, delete).
Endpoints /people (the first page), /people_page (page, start: page `page` of
PEOPLE_PER_PAGE people in name order, from the first name >= start), /remove, /rename.

Deleting an entry also deletes the picture files the app made of it, so the old thumbnail
URLs stop serving at once; a deletion elsewhere (the CLI, another replica) is caught on the
next file request by demo/freshness.py.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from index.checks import MAX_NAME_LENGTH

from .. import render
from ..service import PEOPLE_PER_PAGE
from . import TabContext, guarded, shown

#: The Gallery tab shows a thumbnail for at most this many people (the table lists everyone).
MAX_COVERS = 120


def build(ctx: TabContext) -> None:
    @guarded
    def people(page=1, start=""):
        shown_people, total, number = ctx.service.people_page(page, start)
        table = render.people_page_markdown(
            [(p.name, len(p.entries)) for p in shown_people], total, number, PEOPLE_PER_PAGE
        )
        covers = []
        for p in shown_people[:MAX_COVERS]:
            thumb = ctx.thumbnail(p.entries[0]) if p.entries else None
            if thumb is not None:
                covers.append((thumb, f"{p.name} ({len(p.entries)})"))
        names = gr.update(choices=[p.name for p in shown_people])
        return table, covers, render.people_payload(shown_people), names

    def refresh(page=1, start=""):  # the same as people(), for the page's own refreshes (not an endpoint)
        return people(page, start)

    @guarded
    def first_page():
        return people(1, "")

    def turn(page, step):
        try:
            return str(max(1, int(str(page or 1).strip()) + step))
        except (TypeError, ValueError, OverflowError):
            return "1"

    @guarded
    def person_entries(person):
        entries = ctx.service.entries_of(person)
        shots = [(t, f"entry {e}") for e in entries if (t := ctx.thumbnail(e)) is not None]
        choices = [("every entry of this person", "")] + [(f"entry {e}", str(e)) for e in entries]
        return shots, gr.update(choices=choices, value="")

    @guarded
    def pick_entry(person, evt: gr.SelectData):
        shown_entries = [e for e in ctx.service.entries_of(person) if ctx.thumbnail(e) is not None]
        return str(shown_entries[evt.index]) if 0 <= evt.index < len(shown_entries) else ""

    @guarded
    def remove(person, entry):
        message, removed = ctx.service.remove(person, entry)
        ctx.files.forget(removed)
        gr.Info(shown(message))
        return message

    @guarded
    def rename(old, new):
        message = ctx.service.rename(old, new)
        gr.Info(shown(message))
        return message, " ".join((new or "").split()) if isinstance(new, str) else "", ""

    with gr.Tab("Gallery", id="gallery"):
        scope_line = gr.Markdown(elem_id="gallery-scope", elem_classes="twin-note")
        table = gr.Markdown(label="Table", elem_id="people-table")
        covers = gr.Gallery(
            label="People", columns=8, height=260, interactive=False, fit_columns=False, object_fit="contain"
        )
        with gr.Row():
            previous_btn = gr.Button("◀ Previous", size="sm")
            first_btn = gr.Button("⏮ First page", size="sm")
            page_box = gr.Textbox(label="Page", value="1", max_length=20, elem_id="people-page")
            start_box = gr.Textbox(label="Names from", placeholder="e.g. M", max_length=MAX_NAME_LENGTH)
            next_btn = gr.Button("Next ▶", size="sm")
            refresh_btn = gr.Button("Refresh", size="sm")
        with gr.Accordion("People (JSON)", open=False):
            everyone = gr.JSON(label="People")
        gr.Markdown("### Change")
        with gr.Row():
            person = gr.Dropdown(label="Person", choices=[], value=None, allow_custom_value=True, elem_id="person")
            entry = gr.Dropdown(
                label="Entry",
                choices=[("every entry of this person", "")],
                value="",
                allow_custom_value=True,
                elem_id="entry",
            )
        person_shots = gr.Gallery(
            label="Entries of this person (click one to pick it)",
            columns=8,
            height=200,
            interactive=False,
            fit_columns=False,
            object_fit="contain",
        )
        with gr.Row():
            new_name = gr.Textbox(label="New name", max_length=MAX_NAME_LENGTH, elem_id="new-name")
            rename_btn = gr.Button("Rename", elem_id="rename-button")
            remove_btn = gr.Button("Delete the entry (or the person)", variant="stop", elem_id="remove-button")
        result = gr.Textbox(label="Result", interactive=False, elem_id="manage-result")  # plain text

    outputs = [table, covers, everyone, person]
    refresh_people: dict[str, Any] = dict(
        fn=refresh, inputs=[page_box, start_box], outputs=outputs, api_visibility="private", queue=False
    )
    ctx.after_change.append(refresh_people)

    refresh_btn.click(people, [page_box, start_box], outputs, api_name="people_page")
    first_btn.click(first_page, None, outputs, api_name="people").then(
        lambda: ("1", ""), None, [page_box, start_box], api_visibility="private", queue=False
    )
    start_box.submit(lambda: "1", None, page_box, api_visibility="private", queue=False).then(**refresh_people)
    previous_btn.click(lambda n: turn(n, -1), page_box, page_box, api_visibility="private", queue=False).then(
        **refresh_people
    )
    next_btn.click(lambda n: turn(n, 1), page_box, page_box, api_visibility="private", queue=False).then(
        **refresh_people
    )
    person.change(person_entries, person, [person_shots, entry], api_visibility="private")
    person_shots.select(pick_entry, person, entry, api_visibility="private")
    remove_btn.click(remove, [person, entry], result, api_name="remove").then(**refresh_people).then(
        person_entries, person, [person_shots, entry], api_visibility="private"
    )
    rename_btn.click(rename, [person, new_name], [result, person, new_name], api_name="rename").then(**refresh_people)
    ctx.on_load.append(refresh_people)
    ctx.on_load.append(dict(fn=ctx.service.scope_line, outputs=scope_line, api_visibility="private", queue=False))
