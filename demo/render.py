"""Presentation helpers for the demo: words, numbers, markdown and pictures; no Gradio here.

Everything a person reads in the page is made here, so it can be unit-tested without a
server. Names come from users: every one of them goes through `md_escape` (markdown and
HTML) before it reaches the page.

(About 380 lines: every sentence and picture the page shows, and the API's JSON payloads, in
one place on purpose: one file to read for what a person sees.)
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SAME = "same person"
NOT_SURE = "not sure"
DIFFERENT = "different people"
UNKNOWN = "unknown"
#: The engine's three verdicts (engine.verdict) in words.
VERDICT_WORDS = {"same": SAME, "not sure": NOT_SURE, "different": DIFFERENT}

#: Box colours: the face that was used, the other faces, and faces nobody was matched to.
CHOSEN = (22, 163, 74)  # green
OTHER = (245, 158, 11)  # amber
STRANGER = (220, 38, 38)  # red

_NO_AUTOLINK = str.maketrans({":": "&#58;", "@": "&#64;", "$": "&#36;", "/": "&#47;"})
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def verdict_words(verdict: bool | str) -> str:
    """The verdict in words: `SAME`, `NOT_SURE` or `DIFFERENT` (a bool: the two-way verdict)."""
    if isinstance(verdict, bool):
        return SAME if verdict else DIFFERENT
    return VERDICT_WORDS[verdict]


def percent(value: float) -> str:
    """0..1 as a percentage for people: one decimal, clamped to 0..100."""
    return f"{min(max(float(value), 0.0), 1.0) * 100:.1f}%"


def md_escape(text: object) -> str:
    """Text from a user made safe for Markdown and HTML: shown literally, never interpreted.

    Besides Markdown's and HTML's own characters, the characters that let a Markdown renderer
    turn plain text into a link (`:` of a scheme, `@` of an address, `$` of maths) are written
    as character references: a name like `Click https://evil.example/login` is shown as
    typed, never as a clickable link.
    """
    text = " ".join(str(text).split())  # no line breaks inside a table cell
    escaped = html.escape(_MD_SPECIAL.sub(r"\\\1", text), quote=True)
    return escaped.translate(_NO_AUTOLINK)


def refusal_markdown(message: str) -> str:
    """Why a request was refused, for a tab's result area (it stays until the next action)."""
    return f"### ✗ Not done\n\n{md_escape(message)}"


def face_choice_note(which: str, count: int, used: int) -> str:
    """Which face of a photo was used, when it has several ('' when it has only one)."""
    if count <= 1:
        return ""
    return (
        f"Photo {which} has {count} faces; face {used} (boxed in green) was used. "
        f"Faces are numbered left to right: pick another with *Face in photo {which}*."
    )


def compare_markdown(
    verdict: bool | str,
    distance: float,
    similarity: float,
    threshold: float,
    faces_a: int = 1,
    faces_b: int = 1,
    used_a: int = 1,
    used_b: int = 1,
    band: tuple[float, float] | None = None,
    warnings: Sequence[str] = (),
    qualities: tuple[float | None, float | None] = (None, None),
) -> str:
    """The Compare tab's answer: verdict, similarity, distance, which faces, how far to trust it."""
    words = verdict_words(verdict)
    icon = {SAME: "✓", NOT_SURE: "?", DIFFERENT: "✗"}[words]
    lines = [
        f"## {icon} {words.capitalize()}",
        f"**Similarity {percent(similarity)}** · distance {distance:.3f} "
        f"(the same person when at most {threshold:.3f})",
    ]
    if words == NOT_SURE and band is not None:
        lines.append(
            f"The distance lies in the uncertain band {band[0]:.3f}–{band[1]:.3f}, where the model is "
            "wrong about one time in ten or more: treat this pair as undecided, or try other photos."
        )
    for warning in warnings:
        lines.append(f"⚠ {md_escape(warning)}")
    quality_a, quality_b = qualities
    if quality_a is not None and quality_b is not None:
        lines.append(f"Face quality: A {quality_a * 100:.0f}/100 · B {quality_b * 100:.0f}/100")
    for note in (face_choice_note("A", faces_a, used_a), face_choice_note("B", faces_b, used_b)):
        if note:
            lines.append(note)
    return "\n\n".join(lines)


def face_label(name: str | None, similarity: float | None) -> str:
    """Label drawn on a face: 'Name 87.0%' or 'unknown' (plain text, drawn as pixels)."""
    if name is None:
        return UNKNOWN
    return f"{name} {percent(similarity)}" if similarity is not None else str(name)


#: Why a face with a high "closest" similarity can still be unknown (the two thresholds).
UNKNOWN_NOTE = (
    "*unknown*: nobody enrolled is close enough to name. Naming asks for a closer match than "
    "comparing two photos does, and a closer one the more people are enrolled, so that a stranger "
    "is rarely named as someone; the closest match is shown for reference only."
)


def identify_markdown(rows: Sequence[dict], found: int | None = None) -> str:
    """A table of the faces in an Identify photo: number, who, similarity.

    `found`: how many faces the photo holds, when more than were matched (the cap)."""
    if not rows:
        return "No face was found in this photo."
    found = len(rows) if found is None else max(found, len(rows))
    head = f"Found {found} face{'s' if found != 1 else ''}."
    if found > len(rows):
        head += f" The {len(rows)} most prominent are matched and boxed; crop the photo to see the others."
    if len(rows) > 1:
        head += " They are numbered left to right, as on the picture."
    lines = [head, "", "| face | who | similarity |", "|---|---|---|"]
    for row in rows:
        if row.get("name") is not None:
            who = md_escape(row["name"])
        elif row.get("top"):  # not within the threshold: the closest, for reference only
            top = row["top"][0]
            who = f"*{UNKNOWN}* (closest: {md_escape(top['name'])}, {percent(top['similarity'])})"
        else:
            who = f"*{UNKNOWN}*"
        sim = percent(row["similarity"]) if row.get("similarity") is not None else "–"
        lines.append(f"| {row['face']} | {who} | {sim} |")
    if any(row.get("name") is None and row.get("top") for row in rows):
        lines += ["", UNKNOWN_NOTE]
    return "\n".join(lines)


def people_markdown(people: Sequence[tuple[str, int]]) -> str:
    """The Gallery tab's table of people and how many photos each has."""
    if not people:
        return "The gallery is empty: enroll someone in the *Enroll* tab."
    total = sum(count for _, count in people)
    lines = [
        f"{len(people)} {'person' if len(people) == 1 else 'people'}, {total} {'entry' if total == 1 else 'entries'}.",
        "",
        "| name | entries |",
        "|---|---|",
    ]
    lines += [f"| {md_escape(name)} | {count} |" for name, count in people]
    return "\n".join(lines)


def people_page_markdown(people: Sequence[tuple[str, int]], total: int, page: int, per_page: int) -> str:
    """One page of the Gallery tab's table: which people of how many, then the rows."""
    pages = max(1, -(-total // per_page))
    if not total:
        return people_markdown([])
    first = (page - 1) * per_page + 1
    head = (
        f"People {first:,}-{first + len(people) - 1:,} of {total:,} (page {page:,} of {pages:,})."
        if people
        else f"Page {page:,} is past the last page ({pages:,}) of {total:,} people."
    )
    rows = ["| name | entries |", "|---|---|"] + [f"| {md_escape(name)} | {count} |" for name, count in people]
    return "\n".join([head, ""] + (rows if people else []))


def enroll_markdown(
    name: str, made: int, refused: Sequence[tuple[str, str]], warnings: Sequence[str], already: int = 0
) -> str:
    """What Enroll did: entries made, photos already there, photos refused and why, warnings."""
    who = md_escape(name)
    lines = []
    if made:
        lines.append(f"✓ Enrolled {made} photo{'s' if made != 1 else ''} of **{who}**.")
    elif not already:
        lines.append(f"✗ Nothing was enrolled for **{who}**.")
    if already:
        lines.append(
            f"{'- ' if made else '✓ '}{already} photo{'s were' if already != 1 else ' was'} already "
            f"enrolled as **{who}**; nothing new was added for {'them' if already != 1 else 'it'}."
        )
    for photo, reason in refused:
        lines.append(f"- Refused {md_escape(photo)}: {md_escape(reason)}")
    for warning in warnings:
        lines.append(f"- ⚠ {md_escape(warning)}")
    return "\n".join(lines)


# -- pictures ---------------------------------------------------------------------------------
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def draw_faces(
    image: Image.Image,
    boxes: Iterable[Sequence[float] | np.ndarray],
    labels: Sequence[str] | None = None,
    chosen: int | None = None,
    colours: Sequence[tuple[int, int, int]] | None = None,
    max_side: int | None = None,
) -> Image.Image:
    """A copy of `image` with every face boxed and labelled (default label: its number, 1-based),
    the label inside the box's top-left corner so that neighbours' labels never overlap.

    `chosen` (0-based) is drawn in green and thicker, the others in amber, unless `colours`
    gives one colour per box. With `max_side`, a larger photo is first scaled down to it
    (the page shows it small anyway, and big pictures are slow to send).
    """
    out = image.convert("RGB")
    scale = 1.0
    if max_side is not None and max(out.size) > max_side:
        scale = max_side / max(out.size)
        size = (max(1, round(out.width * scale)), max(1, round(out.height * scale)))
        out = out.resize(size, Image.Resampling.BILINEAR)
    else:
        out = out.copy()
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    width = max(2, round(side / 200))
    font = _font(max(12, round(side / 40)))
    boxes = [tuple(float(v) * scale for v in box[:4]) for box in boxes]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if colours is not None:
            colour = colours[i]
        else:
            colour = CHOSEN if chosen is None or i == chosen else OTHER
        thick = width * 2 if chosen is not None and i == chosen else width
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=thick)
        text = labels[i] if labels is not None else str(i + 1)
        if not text:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        pad = max(2, th // 4)
        # inside the box's top-left corner, kept inside the picture: a label never covers
        # another face's label, however close the faces are (names go in the table)
        tx = min(max(0.0, x1 + thick), max(0.0, out.width - tw - 2 * pad))
        ty = min(max(0.0, y1 + thick), max(0.0, out.height - th - 2 * pad))
        draw.rectangle((tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad), fill=colour)
        draw.text((tx + pad - left, ty + pad - top), text, fill=(255, 255, 255), font=font)
    return out


def crop_image(crop: np.ndarray | Image.Image) -> Image.Image:
    """An aligned face crop (uint8 array) as an RGB picture."""
    if isinstance(crop, Image.Image):
        return crop.convert("RGB")
    return Image.fromarray(np.asarray(crop, dtype=np.uint8)).convert("RGB")


def side_by_side(
    left: np.ndarray | Image.Image, right: np.ndarray | Image.Image, gap: int = 8, size: int = 224
) -> Image.Image:
    """Two face crops next to each other on white, each scaled to `size` pixels square."""
    tiles = [
        (Image.fromarray(np.asarray(x, dtype=np.uint8)) if not isinstance(x, Image.Image) else x)
        .convert("RGB")
        .resize((size, size), Image.Resampling.BICUBIC)
        for x in (left, right)
    ]
    out = Image.new("RGB", (2 * size + gap, size), (255, 255, 255))
    out.paste(tiles[0], (0, 0))
    out.paste(tiles[1], (size + gap, 0))
    return out


# -- API payloads ------------------------------------------------------------------------------
# The JSON each endpoint returns (the "Details (JSON)" blocks and gradio_client's results).
# Built here, and only here, so the API's shape is in one place:
#   /compare  -> compare_payload:  verdict ("same person" / "not sure" / "different people"),
#                same (distance <= threshold), band [low, high] of "not sure", warnings (poor
#                faces), quality_a / quality_b {score, ok, reason}, distance, similarity,
#                similarity_percent, threshold, face_a, face_b, faces_in_a, faces_in_b, model_id
#   /identify -> identify_payload: faces [{face, name, label, similarity, distance, entry_id,
#                box, top [{name, entry_id, distance, similarity}]}], faces_found, threshold, model_id
#   /enroll   -> enroll_payload:   name, entries [{entry_id, photo}], refused [{photo, reason}], warnings
#   /people   -> people_payload:   [{name, count, entries}]
def compare_payload(comparison, used_a: int, used_b: int, faces_a: int, faces_b: int, model_id: str) -> dict:
    c = comparison
    band = getattr(c, "band", None)
    return {
        "verdict": verdict_words(getattr(c, "verdict", "") or bool(c.same)),
        "same": bool(c.same),
        "band": [round(band.low, 6), round(band.high, 6)] if band is not None else None,
        "warnings": list(getattr(c, "warnings", [])),
        "quality_a": _quality(c.face_a),
        "quality_b": _quality(c.face_b),
        "distance": round(float(c.distance), 6),
        "similarity": round(float(c.similarity), 6),
        "similarity_percent": percent(c.similarity),
        "threshold": float(c.threshold),
        "face_a": used_a,
        "face_b": used_b,
        "faces_in_a": faces_a,
        "faces_in_b": faces_b,
        "model_id": model_id,
    }


def _quality(face) -> dict | None:
    q = getattr(face, "quality", None)
    if q is None:
        return None
    return {"score": round(float(q.score), 4), "ok": bool(q.ok), "reason": q.reason}


def identify_rows(faces) -> list[dict]:
    """One row per identified face (demo.service.IdentifiedFace), as the API returns it."""
    rows = []
    for item in faces:
        m = item.match
        rows.append(
            {
                "face": item.number,
                "name": m.name if m else None,
                "label": m.name if m else UNKNOWN,
                "similarity": round(m.similarity, 6) if m else None,
                "distance": round(m.distance, 6) if m else None,
                "entry_id": m.entry_id if m else None,
                "box": [round(float(v), 1) for v in item.face.box],
                "top": [
                    {
                        "name": t.name,
                        "entry_id": t.entry_id,
                        "distance": round(t.distance, 6),
                        "similarity": round(t.similarity, 6),
                    }
                    for t in item.top
                ],
            }
        )
    return rows


def identify_payload(rows: list[dict], found: int, threshold: float, model_id: str) -> dict:
    return {"faces": rows, "faces_found": int(found), "threshold": float(threshold), "model_id": model_id}


def enroll_payload(result) -> dict:
    """What Enroll did (demo.service.EnrollResult), as the API returns it."""
    return {
        "name": result.name,
        "entries": [{"entry_id": e, "photo": p} for e, _, p in result.entries]
        + [{"entry_id": e, "photo": p, "already_enrolled": True} for e, _, p in result.duplicates],
        "refused": [{"photo": p, "reason": why} for p, why in result.refused],
        "warnings": list(result.warnings),
    }


def people_payload(people) -> list[dict]:
    return [{"name": p.name, "count": len(p.entries), "entries": list(p.entries)} for p in people]


def bulk_markdown(summary: dict) -> str:
    """What a bulk enrollment did: totals, then every refusal and warning (names escaped)."""
    lines = [
        f"**{summary['enrolled']}** photo{'s' if summary['enrolled'] != 1 else ''} enrolled for "
        f"{summary['people']} {'person' if summary['people'] == 1 else 'people'}; "
        f"{summary['already_enrolled']} already enrolled (skipped); {len(summary['refused'])} refused."
    ]
    if summary["by_person"]:
        lines += ["", "| name | enrolled | already there | refused |", "|---|---|---|---|"]
        lines += [
            f"| {md_escape(p['name'])} | {p['enrolled']} | {p['already_enrolled']} | {p['refused']} |"
            for p in summary["by_person"]
        ]
    for item in summary["refused"]:
        lines.append(f"- Refused {md_escape(item['photo'])}: {md_escape(item['reason'])}")
    for warning in summary["warnings"]:
        lines.append(f"- ⚠ {md_escape(warning)}")
    return "\n".join(lines)
