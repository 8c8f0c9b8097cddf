"""demo.render: the words, tables and pictures of the app, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from demo import render
from engine.identification import IdentificationThreshold

SCRIPT = "<script>alert(1)</script>"


def test_verdict_is_one_of_two_phrases():
    assert render.verdict_words(True) == "same person"
    assert render.verdict_words(False) == "different people"
    assert [render.verdict_words(v) for v in ("same", "not sure", "different")] == [
        "same person",
        "not sure",
        "different people",
    ]


def test_not_sure_says_why_and_poor_faces_are_flagged():
    text = render.compare_markdown(
        "not sure",
        0.93,
        0.5,
        0.928,
        band=(0.85, 1.0),
        warnings=["The first photo: the face is blurred; use a sharper photo."],
    )
    assert "Not sure" in text and "0.850–1.000" in text and "blurred" in text


@pytest.mark.parametrize(
    "value, text", [(0.0, "0.0%"), (0.8734, "87.3%"), (1.0, "100.0%"), (-0.2, "0.0%"), (1.7, "100.0%")]
)
def test_percent(value, text):
    assert render.percent(value) == text


def test_md_escape_neutralises_html_and_markdown():
    escaped = render.md_escape(SCRIPT)
    assert "<" not in escaped and ">" not in escaped
    assert "&lt;script&gt;" in escaped
    assert render.md_escape("a|b *c*\nd") == "a\\|b \\*c\\* d"
    assert render.md_escape('"quoted" & more') == "&quot;quoted&quot; &amp; more"


@pytest.mark.parametrize(
    "make",
    [
        lambda n: render.people_markdown([(n, 2)]),
        lambda n: render.people_page_markdown([(n, 2)], 51, 2, 50),
        lambda n: render.identify_markdown([{"face": 1, "name": n, "similarity": 0.9}]),
        lambda n: render.enroll_markdown(n, 1, [("photo.jpg", f"looks like {n}")], [f"already enrolled as {n}"]),
    ],
)
def test_names_are_escaped_everywhere(make):
    text = make(SCRIPT)
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_compare_markdown_says_verdict_distance_and_faces_used():
    text = render.compare_markdown(True, 0.25, 0.97, 1.0, faces_a=3, faces_b=1, used_a=2, used_b=1)
    assert "Same person" in text and "97.0%" in text and "0.250" in text
    assert "Photo A has 3 faces; face 2" in text and "Photo B has" not in text
    assert "Different people" in render.compare_markdown(False, 1.4, 0.02, 1.0)


def test_identify_markdown_unknown_and_empty():
    text = render.identify_markdown([{"face": 1, "name": None, "similarity": None}])
    assert "unknown" in text
    assert "No face" in render.identify_markdown([])
    assert render.UNKNOWN_NOTE not in text  # no closest match: nothing to explain


def test_an_unknown_face_with_a_close_match_says_why_it_is_not_named():
    rows = [
        {"face": 1, "name": None, "similarity": None, "top": [{"name": "Tony Blair", "similarity": 0.953}]},
        {"face": 2, "name": "Ada", "similarity": 0.99},
    ]
    text = render.identify_markdown(rows)
    assert "(closest: Tony Blair, 95.3%)" in text and text.endswith(render.UNKNOWN_NOTE)
    assert render.UNKNOWN_NOTE not in render.identify_markdown(rows[1:])


def test_face_label():
    assert render.face_label(None, None) == "unknown"
    assert render.face_label("Ann", 0.5) == "Ann 50.0%"


def test_draw_faces_boxes_in_colour_and_keeps_the_original():
    image = Image.new("RGB", (200, 120), (255, 255, 255))
    out = render.draw_faces(image, [(20, 40, 80, 110), (120, 40, 180, 110)], chosen=0)
    assert out.size == image.size and image.getpixel((20, 60)) == (255, 255, 255)
    assert out.getpixel((20, 80)) == render.CHOSEN
    assert out.getpixel((120, 80)) == render.OTHER
    labelled = render.draw_faces(image, [(20, 40, 80, 110)], labels=["unknown"], colours=[render.STRANGER])
    assert labelled.getpixel((20, 80)) == render.STRANGER


def test_draw_faces_label_stays_inside_the_image():
    image = Image.new("RGB", (60, 60), (255, 255, 255))
    out = render.draw_faces(image, [(0, 0, 59, 59)], labels=["a rather long name 99.9%"])
    assert out.size == (60, 60)


def test_side_by_side():
    a = np.zeros((112, 112, 3), np.uint8)
    b = np.full((112, 112, 3), 255, np.uint8)
    pair = render.side_by_side(a, b, gap=8, size=100)
    assert pair.size == (208, 100)
    assert pair.getpixel((50, 50)) == (0, 0, 0) and pair.getpixel((150, 50)) == (255, 255, 255)


def test_the_about_page_reads_the_card_for_people():
    from demo import card

    model = {
        "architecture": {"arch": "resnet", "input_size": 64, "embedding_size": 128},
        "training_data": {
            "sets": ["celeba_aligned"],
            "images": 15574,
            "people": 5441,
            "licence": "CelebA: non-commercial research use only",
        },
        "lfw": {"view2_10fold": {"mean": 0.9007, "std": 0.01}},
        "threshold_source": "LFW View 1",
        "intended_use": SCRIPT,
    }
    text = "\n".join(
        [
            card.model_section(model, "twin-x"),
            card.data_section(model),
            card.accuracy_section(model, 0.928),
            card.threshold_section(model, 0.928, IdentificationThreshold.fallback_for(0.928)),
            card.limits_section(model),
        ]
    )
    assert "64×64" in text and "15,574 photos of 5,441 people" in text and "non\\-commercial" in text
    assert "| LFW View 2, 10-fold (6,000 pairs) | 90.1% ± 1.0% |" in text and "0.928" in text
    assert "<script>" not in text and "input_size" not in text and "{" not in text


def test_the_about_page_names_the_teacher_in_words_not_as_a_dict():
    from demo import card
    from training.evaluate import TEACHER_CARD

    model = {"training_data": {"sets": ["celeba_aligned"]}, "teacher": TEACHER_CARD, "recipe": {"distill_weight": 2.0}}
    text = card.data_section(model)
    assert "Teacher (training only)" in text and "dlib" in text and "weight 2.0" in text
    assert "public domain" in text and "{" not in text and "'model'" not in text
    assert "Teacher" not in card.data_section({"training_data": {"sets": ["celeba_aligned"]}, "teacher": None})


@pytest.mark.parametrize(
    "name", ["Click https://evil。example/login", "www.evil.example", "mail ann@evil.example", "$x^2$ maths"]
)
def test_a_name_never_becomes_a_link_or_maths(name):
    text = render.md_escape(name)
    for raw in ("://", "www.", "@", "$"):
        assert raw not in text


def test_status_marks_are_text_glyphs_that_any_font_has():
    """Emoji such as ✅ need an emoji font: without one (headless browsers, many Linux desktops)
    the verdict heading showed an empty box. Text marks (✓ ✗ ⚠) are in common fonts."""
    import unicodedata

    texts = [
        render.compare_markdown(verdict, 0.9, 0.5, 0.9, band=(0.8, 1.0), warnings=["blurred"])
        for verdict in ("same", "not sure", "different")
    ]
    for text in texts:
        wide = [c for c in text if unicodedata.east_asian_width(c) == "W" or c == "\ufe0f"]
        assert not wide, (wide, text)
    assert texts[0].startswith("## ✓ Same person") and texts[2].startswith("## ✗ Different people")


def test_the_about_page_states_the_identification_threshold_the_app_uses():
    """The card stores the identification threshold as a fitted entry (a dict); the About page
    used to test for a bare number, miss it, and say Identify used the verification threshold."""
    import json

    from demo import card
    from engine.model import DEFAULT_WEIGHTS

    shipped = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    fitted = IdentificationThreshold.from_card(shipped)
    assert fitted is not None and fitted.by_gallery_size
    text = card.threshold_section(shipped, shipped["threshold"], fitted)
    assert f"at most **{fitted.value:.3f}** with {fitted.reference_gallery_size:,} people enrolled" in text
    assert f"{fitted.for_gallery(10):.3f} with 10 people" in text and "same threshold" not in text
    bare = card.threshold_section({}, 1.0, IdentificationThreshold.fallback_for(1.0, 0.8))
    assert "no fitted identification threshold" in bare and "within **0.800**" in bare
    assert "controls no false-alarm rate" in bare
