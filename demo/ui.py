"""The Gradio page: five tabs wired to demo.service, drawn with demo.render. No logic here.

Endpoints (gradio_client): /compare, /enroll, /identify, /people, /remove, /rename.
Errors a user can cause are raised as gr.Error with a readable message (shown in the page,
and as AppError(message) to API clients); anything else is logged and reported as an
internal error, never as a traceback.
"""
from __future__ import annotations

import functools
import html
import logging
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from engine import FaceEngine, FaceError

from . import render
from .service import TwinService, UserError

log = logging.getLogger("twin.demo")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = Path(__file__).resolve().parent / "examples"
RESULTS = ROOT / "bench" / "results"

#: The Gallery tab shows a thumbnail for at most this many people (the table lists everyone).
MAX_COVERS = 120

#: Custom CSS, passed to launch() (Gradio 6 moved it there from Blocks).
LAUNCH_CSS = """
#twin-verdict h2 { margin-top: 0; }
.twin-note { font-size: 0.9em; opacity: 0.85; }
"""

PRIVACY = """
### Privacy
- **Compare and Identify** keep nothing: the photos are processed in memory; Gradio's
  temporary copies of uploads are deleted within two hours, and on every restart.
- **Enroll** stores, in the gallery folder on the server, the **name** you typed, the face's
  **embedding** (a list of numbers computed from the face) and, unless the app runs with
  `--no-thumbnails`, a small **thumbnail** of the aligned face. The photo itself is not kept.
- **Deleting**: the *Gallery* tab deletes one entry or everyone's entries under a name; the
  embedding and thumbnail are removed with it. Deleting the gallery folder deletes everything.
- The gallery is shared by everyone who can open this app. Enroll only people who agreed to it.
- No analytics or telemetry are sent; nothing is kept in your browser's run history.
"""


def _shown(message: str) -> str:
    """gr.Error and gr.Warning render HTML: escape what may contain user-typed text."""
    return html.escape(message, quote=False)


def guarded(fn: Callable) -> Callable:
    """User mistakes become gr.Error(message); bugs are logged and shown without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (UserError, FaceError) as exc:
            raise gr.Error(_shown(str(exc)), print_exception=False) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error("Something went wrong on our side; the error has been logged. "
                           "Please try again, or with another photo.", print_exception=False) from None

    return wrapper


def _example(*names: str) -> list[str]:
    return [str(EXAMPLES / name) for name in names]


def build_demo(engine: FaceEngine, gallery: Any, thumbnails: bool = True) -> gr.Blocks:
    """The whole app as a gr.Blocks; launch it with app.py (which sets the queue and limits)."""
    service = TwinService(engine, gallery, thumbnails=thumbnails)

    # -- handlers: call the service, render the result ------------------------------------
    @guarded
    def compare(photo_a, photo_b, face_a=1, face_b=1):
        r = service.compare(photo_a, photo_b, face_a, face_b)
        c = r.comparison
        n_a, n_b = len(r.photo_a.faces), len(r.photo_b.faces)
        text = render.compare_markdown(c.same, c.distance, c.similarity, c.threshold, n_a, n_b, r.used_a, r.used_b)
        details = {
            "verdict": render.verdict_words(c.same), "same": bool(c.same),
            "distance": round(float(c.distance), 6), "similarity": round(float(c.similarity), 6),
            "similarity_percent": render.percent(c.similarity), "threshold": float(c.threshold),
            "face_a": r.used_a, "face_b": r.used_b, "faces_in_a": n_a, "faces_in_b": n_b,
            "model_id": engine.model_id,
        }
        return (text, details, render.side_by_side(c.face_a.crop, c.face_b.crop),
                render.draw_faces(r.photo_a.image, [f.box for f in r.photo_a.faces], chosen=r.used_a - 1, max_side=800),
                render.draw_faces(r.photo_b.image, [f.box for f in r.photo_b.faces], chosen=r.used_b - 1, max_side=800),
                gr.update(value=r.used_a, visible=n_a > 1, maximum=n_a),
                gr.update(value=r.used_b, visible=n_b > 1, maximum=n_b))

    @guarded
    def identify(photo):
        found, faces = service.identify(photo)
        rows, labels, colours, matches = [], [], [], []
        for item in faces:
            m = item.match
            labels.append(f"{item.number}: {render.face_label(m.name if m else None, m.similarity if m else None)}")
            colours.append(render.CHOSEN if m else render.STRANGER)
            rows.append({"face": item.number, "name": m.name if m else None,
                         "label": m.name if m else render.UNKNOWN,
                         "similarity": round(m.similarity, 6) if m else None,
                         "distance": round(m.distance, 6) if m else None,
                         "entry_id": m.entry_id if m else None,
                         "box": [round(float(v), 1) for v in item.face.box],
                         "top": [{"name": t.name, "entry_id": t.entry_id, "distance": round(t.distance, 6),
                                  "similarity": round(t.similarity, 6)} for t in item.top]})
            for t in item.top:
                thumb = service.thumbnail(t.entry_id)
                if thumb is not None:
                    matches.append((thumb, f"face {item.number} → {t.name} · {render.percent(t.similarity)}"))
        drawn = render.draw_faces(found.image, [f.face.box for f in faces], labels=labels, colours=colours,
                                  max_side=1000)
        details = {"faces": rows, "threshold": float(engine.threshold), "model_id": engine.model_id}
        return drawn, render.identify_markdown(rows), details, matches

    @guarded
    def enroll(name, photos):
        r = service.enroll(name, photos)
        text = render.enroll_markdown(r.name, len(r.entries), r.refused, r.warnings)
        for warning in r.warnings:
            gr.Warning(_shown(warning))
        if not r.entries:
            raise UserError(" ".join(f"{photo}: {reason}" for photo, reason in r.refused) or "Nothing was enrolled.")
        shots = [(crop, f"{r.name} · entry {entry} · {photo}") for entry, crop, photo in r.entries]
        details = {"name": r.name, "entries": [{"entry_id": e, "photo": p} for e, _, p in r.entries],
                   "refused": [{"photo": p, "reason": why} for p, why in r.refused], "warnings": r.warnings}
        return text, shots, details

    @guarded
    def people():
        everyone = service.people()
        table = render.people_markdown([(p.name, len(p.entries)) for p in everyone])
        cover = []
        for p in everyone[:MAX_COVERS]:
            thumb = service.thumbnail(p.entries[0]) if p.entries else None
            if thumb is not None:
                cover.append((thumb, f"{p.name} ({len(p.entries)})"))
        details = [{"name": p.name, "count": len(p.entries), "entries": p.entries} for p in everyone]
        names = [p.name for p in everyone]
        return table, cover, details, gr.update(choices=names)

    def refresh():          # the same as people(), for the page's own refreshes (not an endpoint)
        return people()

    @guarded
    def person_entries(person):
        match = [p for p in service.people() if p.name == (person or "")]
        entries = match[0].entries if match else []
        shots = [(t, f"entry {e}") for e in entries if (t := service.thumbnail(e)) is not None]
        choices = [("every entry of this person", "")] + [(f"entry {e}", str(e)) for e in entries]
        return shots, gr.update(choices=choices, value="")

    @guarded
    def pick_entry(person, evt: gr.SelectData):
        match = [p for p in service.people() if p.name == (person or "")]
        entries = match[0].entries if match else []
        shown = [e for e in entries if service.thumbnail(e) is not None]
        return str(shown[evt.index]) if 0 <= evt.index < len(shown) else ""

    @guarded
    def remove(person, entry):
        message = service.remove(person, entry)
        gr.Info(_shown(message))
        return message

    @guarded
    def rename(old, new):
        message = service.rename(old, new)
        gr.Info(_shown(message))
        return message, " ".join((new or "").split()), ""

    def compare_example(photo_a, photo_b):
        return compare(photo_a, photo_b)

    def identify_example(photo):
        return identify(photo)

    def reset_face():
        return gr.update(value=1, visible=False)

    # -- layout ----------------------------------------------------------------------------
    with gr.Blocks(title="Twin: face similarity", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Twin\nAre two photos of the same person? Compare them, or enroll people "
                    "and find them in new photos.")
        with gr.Tabs():
            # Compare ------------------------------------------------------------------------
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column():
                        photo_a = gr.Image(label="Photo A", type="filepath", sources=["upload", "webcam", "clipboard"],
                                           elem_id="photo-a", height=320)
                        face_a = gr.Number(label="Face in photo A", value=1, precision=0, minimum=1,
                                           visible=False, elem_id="face-a")
                    with gr.Column():
                        photo_b = gr.Image(label="Photo B", type="filepath", sources=["upload", "webcam", "clipboard"],
                                           elem_id="photo-b", height=320)
                        face_b = gr.Number(label="Face in photo B", value=1, precision=0, minimum=1,
                                           visible=False, elem_id="face-b")
                examples_slot = gr.Column()       # filled below, once the outputs exist
                compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-button")
                verdict = gr.Markdown(label="Verdict", elem_id="twin-verdict")
                pair = gr.Image(label="Aligned faces (A | B): what the model compares", interactive=False,
                                format="jpeg", height=240, elem_id="aligned-pair")
                with gr.Row():
                    boxed_a = gr.Image(label="Photo A, face used in green", interactive=False, format="jpeg")
                    boxed_b = gr.Image(label="Photo B, face used in green", interactive=False, format="jpeg")
                with gr.Accordion("Details (JSON)", open=False):
                    compare_json = gr.JSON(label="Comparison", elem_id="compare-json")
                compare_out = [verdict, compare_json, pair, boxed_a, boxed_b, face_a, face_b]
                with examples_slot:
                    gr.Examples(   # one click fills both photos and runs the comparison
                        examples=[_example("Serena_Williams_0001.jpg", "Serena_Williams_0002.jpg"),
                                  _example("Serena_Williams_0001.jpg", "Angelina_Jolie_0001.jpg"),
                                  _example("two_people.jpg", "Tony_Blair_0001.jpg")],
                        example_labels=["Same person, two photos", "Two different people", "A photo with two faces"],
                        inputs=[photo_a, photo_b], outputs=compare_out, fn=compare_example, run_on_click=True,
                        cache_examples=False, label="Examples: click one to try it")

            # Enroll -------------------------------------------------------------------------
            with gr.Tab("Enroll", id="enroll"):
                gr.Markdown("One or more photos of **one** person, alone in each photo. Photos with no face "
                            "or several faces are refused.", elem_classes="twin-note")
                enroll_name = gr.Textbox(label="Name", max_length=100, elem_id="enroll-name")
                enroll_photos = gr.File(label="Photos", file_count="multiple", file_types=["image"],
                                        elem_id="enroll-photos")
                enroll_btn = gr.Button("Enroll", variant="primary", elem_id="enroll-button")
                enroll_md = gr.Markdown(label="Result", elem_id="enroll-result")
                enroll_shots = gr.Gallery(label="Entries made", columns=6, height="auto", interactive=False,
                                          format="jpeg", fit_columns=False, object_fit="contain")
                with gr.Accordion("Details (JSON)", open=False):
                    enroll_json = gr.JSON(label="Enrollment")
                gr.Examples(examples=[["Serena Williams", _example("Serena_Williams_0001.jpg")]],
                            inputs=[enroll_name, enroll_photos], cache_examples=False,
                            label="Example: fills the form; press Enroll to add her")

            # Identify -----------------------------------------------------------------------
            with gr.Tab("Identify", id="identify"):
                with gr.Row():
                    who_photo = gr.Image(label="Photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                                         elem_id="identify-photo", height=360)
                    who_drawn = gr.Image(label="Faces found", interactive=False, format="jpeg", height=360)
                identify_btn = gr.Button("Identify", variant="primary", elem_id="identify-button")
                who_md = gr.Markdown(label="Faces", elem_id="identify-result")
                who_top = gr.Gallery(label="Closest enrolled photos", columns=6, height="auto", interactive=False,
                                     format="jpeg", fit_columns=False, object_fit="contain")
                with gr.Accordion("Details (JSON)", open=False):
                    who_json = gr.JSON(label="Faces")
                gr.Examples(examples=[_example("Serena_Williams_0002.jpg"), _example("two_people.jpg")],
                            inputs=who_photo, outputs=[who_drawn, who_md, who_json, who_top], fn=identify_example,
                            run_on_click=True, cache_examples=False, label="Examples: click one to try it")

            # Gallery ------------------------------------------------------------------------
            with gr.Tab("Gallery", id="gallery"):
                people_md = gr.Markdown(label="Table", elem_id="people-table")
                people_shots = gr.Gallery(label="People", columns=8, height=260, interactive=False,
                                          format="jpeg", fit_columns=False, object_fit="contain")
                refresh_btn = gr.Button("Refresh", size="sm")
                with gr.Accordion("People (JSON)", open=False):
                    people_json = gr.JSON(label="People")
                gr.Markdown("### Change")
                with gr.Row():
                    person = gr.Dropdown(label="Person", choices=[], value=None, allow_custom_value=True,
                                         elem_id="person")
                    entry = gr.Dropdown(label="Entry", choices=[("every entry of this person", "")], value="",
                                        allow_custom_value=True, elem_id="entry")
                person_shots = gr.Gallery(label="Entries of this person (click one to pick it)", columns=8,
                                          height=200, interactive=False, fit_columns=False, format="jpeg",
                                          object_fit="contain")
                with gr.Row():
                    new_name = gr.Textbox(label="New name", max_length=100, elem_id="new-name")
                    rename_btn = gr.Button("Rename", elem_id="rename-button")
                    remove_btn = gr.Button("Delete the entry (or the person)", variant="stop", elem_id="remove-button")
                manage_md = gr.Textbox(label="Result", interactive=False, elem_id="manage-result")  # plain text

            # About --------------------------------------------------------------------------
            with gr.Tab("About", id="about"):
                gr.Markdown(render.card_markdown(engine.card, engine.model_id, engine.threshold))
                roc = RESULTS / "roc.png"
                if roc.is_file():
                    gr.Image(value=str(roc), label="ROC on LFW", interactive=False, height=420)
                oneshot = RESULTS / "oneshot.md"
                if oneshot.is_file():
                    gr.Markdown("### One-shot identification\n\n" + oneshot.read_text(encoding="utf-8"))
                gr.Markdown(PRIVACY)

        # -- events --------------------------------------------------------------------------
        refresh_people = dict(fn=refresh, inputs=None, outputs=[people_md, people_shots, people_json, person],
                              api_visibility="private", queue=False)
        clear = dict(queue=False, api_visibility="private", show_progress="hidden")

        compare_btn.click(lambda: [""] + [None] * 4, None, compare_out[:5], **clear).then(
            compare, [photo_a, photo_b, face_a, face_b], compare_out, api_name="compare", preprocess=False)
        for box, photo in ((face_a, photo_a), (face_b, photo_b)):
            photo.change(reset_face, None, box, **clear)
            box.input(compare, [photo_a, photo_b, face_a, face_b], compare_out, api_visibility="private",
                      preprocess=False)

        enroll_btn.click(lambda: ["", None, None], None, [enroll_md, enroll_shots, enroll_json], **clear).then(
            enroll, [enroll_name, enroll_photos], [enroll_md, enroll_shots, enroll_json], api_name="enroll").then(
            **refresh_people)

        identify_btn.click(lambda: [None, "", None, None], None, [who_drawn, who_md, who_json, who_top], **clear).then(
            identify, who_photo, [who_drawn, who_md, who_json, who_top], api_name="identify", preprocess=False)

        refresh_btn.click(people, None, [people_md, people_shots, people_json, person], api_name="people")
        demo.load(**refresh_people)
        person.change(person_entries, person, [person_shots, entry], api_visibility="private")
        person_shots.select(pick_entry, person, entry, api_visibility="private")
        remove_btn.click(remove, [person, entry], manage_md, api_name="remove").then(
            **refresh_people).then(person_entries, person, [person_shots, entry], api_visibility="private")
        rename_btn.click(rename, [person, new_name], [manage_md, person, new_name], api_name="rename").then(
            **refresh_people)

    return demo
