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
from ..service import PEOPLE_PER_PAGE, UserError, entry_number
from . import CLEAR, TabContext, api_endpoint, guarded, on_page, shown

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

    # -- the page asks before a change that loses something (the API acts at once) ------------
    @guarded
    def ask_remove(person, entry):
        """The question a Delete click asks, naming what will go; nothing is deleted yet."""
        number = entry_number(entry)
        name = person.strip() if isinstance(person, str) else ""
        if number is not None:
            question = f"Delete entry {number}{f' of {name}' if name else ''} (one photo)?"
        else:
            count = len(ctx.service.entries_of(name))
            if not name:
                raise UserError("Choose the person (or one of their entries) to delete.")
            if not count:
                raise UserError(f"There is nobody called {name} in the gallery.")
            question = f"Delete all {count} photo{'s' if count != 1 else ''} of {name}?"
        return _ask(question, {"do": "remove", "person": person, "entry": entry})

    @guarded
    def ask_rename(old, new):
        """A rename onto someone already enrolled merges two people: ask first. Others run at once."""
        old_name = old.strip() if isinstance(old, str) else ""
        new_name_ = " ".join(new.split()) if isinstance(new, str) else ""
        count = len(ctx.service.entries_of(old_name))
        if count and new_name_ and new_name_ != old_name and ctx.service.entries_of(new_name_):
            question = (
                f"{new_name_} is already enrolled: move all {count} photo{'s' if count != 1 else ''} of "
                f"{old_name} to {new_name_}, making them one person?"
            )
            return _ask(question, {"do": "rename", "person": old, "new": new})
        message, person_now, new_now = rename(old, new)
        return message, None, gr.update(visible=False), "", person_now, new_now

    def _ask(question, pending):
        return "", pending, gr.update(visible=True), f"**{render.md_escape(question)}**", gr.update(), gr.update()

    @guarded
    def confirm(pending):
        """The second click: do what the question named; every box shows the state after it."""
        hide = gr.update(visible=False)
        if not pending:
            return "", None, hide, gr.update(), gr.update(), gr.update()
        if pending["do"] == "remove":
            message = remove(pending["person"], pending["entry"])
            return message, None, hide, gr.update(value=None), gr.update(value=""), gr.update()
        message, person_now, new_now = rename(pending["person"], pending["new"])
        return message, None, hide, gr.update(value=person_now), gr.update(value=""), new_now

    def cancel():
        return "Nothing was changed.", None, gr.update(visible=False)

    with gr.Tab("Gallery", id="gallery"):
        scope_line = gr.Markdown(elem_id="gallery-scope", elem_classes="twin-note")
        table = gr.Markdown(label="Table", elem_id="people-table")
        covers = gr.Gallery(
            label="People", columns=8, height=260, interactive=False, fit_columns=False, object_fit="contain"
        )
        with gr.Row():
            previous_btn = gr.Button("◀ Previous", size="sm")
            first_btn = gr.Button("First page", size="sm")
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
        with gr.Column(visible=False, elem_id="confirm-change") as confirm_row:
            question = gr.Markdown(elem_id="confirm-question")
            with gr.Row():
                yes_btn = gr.Button("Yes, do it", variant="stop", elem_id="confirm-yes")
                no_btn = gr.Button("Cancel", elem_id="confirm-no")
        # the change a second click confirms; not gr.State, whose heartbeat keeps the page busy forever
        pending = gr.JSON(None, visible=False)
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
    api_endpoint(ctx, remove, [person, entry], result, "remove")
    api_endpoint(ctx, rename, [person, new_name], [result, person, new_name], "rename")

    def refused(message):
        return f"✗ Not done: {message}", None, gr.update(visible=False), "", gr.update(), gr.update()

    asked = [result, pending, confirm_row, question, person, new_name]
    remove_btn.click(on_page(ask_remove, refused), [person, entry], asked, api_visibility="private")
    rename_btn.click(on_page(ask_rename, refused), [person, new_name], asked, api_visibility="private").then(
        **refresh_people
    )

    def refused_change(message):
        return f"✗ Not done: {message}", None, gr.update(visible=False), gr.update(), gr.update(), gr.update()

    changed = [result, pending, confirm_row, person, entry, new_name]
    yes_btn.click(on_page(confirm, refused_change), pending, changed, api_visibility="private").then(
        **refresh_people
    ).then(person_entries, person, [person_shots, entry], api_visibility="private")
    no_btn.click(cancel, None, [result, pending, confirm_row], **CLEAR)
    ctx.on_load.append(refresh_people)
    ctx.on_load.append(dict(fn=ctx.service.scope_line, outputs=scope_line, api_visibility="private", queue=False))
