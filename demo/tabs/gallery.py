"""Gallery: everyone enrolled, and the two changes (rename, delete). Endpoints /people,
/remove, /rename.

Deleting an entry also deletes the picture files the app made of it, so the old thumbnail
URLs stop serving at once.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from index.checks import MAX_NAME_LENGTH

from .. import render
from . import TabContext, api_endpoint, guarded, on_page, shown

#: The Gallery tab shows a thumbnail for at most this many people (the table lists everyone).
MAX_COVERS = 120


def build(ctx: TabContext) -> None:
    @guarded
    def people():
        everyone = ctx.service.people()
        ctx.files.retain(e for p in everyone for e in p.entries)  # deleted elsewhere (the CLI)
        table = render.people_markdown([(p.name, len(p.entries)) for p in everyone])
        covers = []
        for p in everyone[:MAX_COVERS]:
            thumb = ctx.thumbnail(p.entries[0]) if p.entries else None
            if thumb is not None:
                covers.append((thumb, f"{p.name} ({len(p.entries)})"))
        return table, covers, render.people_payload(everyone), gr.update(choices=[p.name for p in everyone])

    def refresh():  # the same as people(), for the page's own refreshes (not an endpoint)
        return people()

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
        table = gr.Markdown(label="Table", elem_id="people-table")
        covers = gr.Gallery(
            label="People", columns=8, height=260, interactive=False, fit_columns=False, object_fit="contain"
        )
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
        fn=refresh, inputs=None, outputs=outputs, api_visibility="private", queue=False
    )
    ctx.after_change.append(refresh_people)

    refresh_btn.click(people, None, outputs, api_name="people")
    person.change(person_entries, person, [person_shots, entry], api_visibility="private")
    person_shots.select(pick_entry, person, entry, api_visibility="private")
    api_endpoint(ctx, remove, [person, entry], result, "remove")
    api_endpoint(ctx, rename, [person, new_name], [result, person, new_name], "rename")
    remove_btn.click(
        on_page(remove, lambda message: f"✗ Not done: {message}"), [person, entry], result, api_visibility="private"
    ).then(**refresh_people).then(person_entries, person, [person_shots, entry], api_visibility="private")
    rename_btn.click(
        on_page(rename, lambda message: (f"✗ Not done: {message}", gr.update(), gr.update())),
        [person, new_name],
        [result, person, new_name],
        api_visibility="private",
    ).then(**refresh_people)
    ctx.on_load.append(refresh_people)
