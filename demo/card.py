"""The model card (engine/weights/twin.json) as a page a person reads: no raw keys, no JSON.

The full card stays one click away (the About tab's collapsed JSON block and download);
this module picks what a person needs: what the model is, what it learned from and under
which licence, how accurate it is, what the threshold means, and what not to use it for.
Every value comes from the card; a key that is missing is left out, never invented.
"""

from __future__ import annotations

from typing import Any

from engine.identification import IdentificationThreshold

from .render import md_escape


def _get(card: dict, *path: str) -> Any:
    value: Any = card
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _dict(card: dict, key: str) -> dict[str, Any]:
    value = card.get(key)
    return value if isinstance(value, dict) else {}


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.1f}%" if isinstance(value, (int, float)) else "–"


def model_section(card: dict, model_id: str) -> str:
    arch = _dict(card, "architecture")
    size = arch.get("input_size")
    dim = arch.get("embedding_size")
    kind = {"resnet": "a small residual network (ResNet)"}.get(str(arch.get("arch")), "a convolutional network")
    lines = [
        "## What this model is",
        f"A **twin (Siamese) network**: {kind} that turns an aligned face into "
        f"{dim or 'a list of'} numbers (an *embedding*). Two photos are compared by the distance "
        "between their embeddings: the smaller, the more alike. It was trained with a *contrastive "
        "loss*, which pulls photos of the same person together and pushes different people apart.",
    ]
    steps = [
        "the face is found and its five landmarks located (MTCNN)",
        "it is turned upright and scaled onto a fixed template (alignment)"
        + (f", then shrunk to {size}×{size} pixels" if size else ""),
        "the network makes the embedding (averaged with that of the mirrored face)",
    ]
    lines.append("\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1)))
    lines.append(f"Model id: {md_escape(model_id)}.")
    return "\n\n".join(lines)


def data_section(card: dict) -> str:
    data = _dict(card, "training_data")
    names = {
        "celeba_aligned": "CelebA (aligned crops)",
        "celeba_wild": "CelebA (in-the-wild photos)",
        "att_train": "AT&T faces (37 people)",
    }
    sets = ", ".join(names.get(s, md_escape(s)) for s in data.get("sets", [])) or "–"
    lines = [
        "## What it learned from",
        f"{data.get('images', '–'):,} photos of {data.get('people', '–'):,} people: {sets}. "
        "None of the people in LFW, the benchmark below, was seen in training."
        if isinstance(data.get("images"), int) and isinstance(data.get("people"), int)
        else f"Training sets: {sets}.",
    ]
    if data.get("licence"):
        lines.append(f"**Licence.** {md_escape(data['licence'])}")
    teacher = teacher_sentence(card)
    if teacher:
        lines.append(teacher)
    return "\n\n".join(lines)


def teacher_sentence(card: dict) -> str:
    """What the training-time teacher was and contributed, when the card names one."""
    teacher, recipe = _dict(card, "teacher"), _dict(card, "recipe")
    if not teacher:
        return ""
    weight = recipe.get("distill_weight")
    how = (
        f" Besides the contrastive loss on pairs, each training photo's embedding was pulled toward the "
        f"teacher's embedding of the same photo (weight {weight})."
        if isinstance(weight, (int, float)) and weight
        else ""
    )
    use = md_escape(str(teacher.get("use", "")).rstrip(".") + ".") if teacher.get("use") else ""
    parts = [
        f"**Teacher (training only).** {md_escape(teacher.get('model', 'a teacher network'))}.{how}",
        use,
        f"Licence: {md_escape(teacher.get('licence', '–'))}.",
    ]
    return " ".join(part for part in parts if part)


def accuracy_section(card: dict, threshold: float) -> str:
    rows = []
    view2 = _get(card, "lfw", "view2_10fold")
    if isinstance(view2, dict) and "mean" in view2:
        rows.append(("LFW View 2, 10-fold (6,000 pairs)", f"{_pct(view2['mean'])} ± {_pct(view2.get('std'))}"))
    for key, label in (
        ("at_threshold", "LFW View 2 at the shipped threshold"),
        ("auc", "LFW area under the ROC curve"),
        ("product_path", "LFW through the app's own face finder"),
    ):
        value = _get(card, "lfw", key)
        if isinstance(value, dict):
            value = value.get("accuracy", value.get("mean"))
        if isinstance(value, (int, float)):
            rows.append((label, f"{value:.4f}" if key == "auc" else _pct(value)))
    val = _get(card, "validation", "val_acc")
    if isinstance(val, (int, float)):
        rows.append(("Held-out CelebA people (validation)", _pct(val)))
    lines = ["## How accurate it is"]
    if rows:
        lines.append("| measured on | accuracy |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows))
    lines.append(
        "Accuracy on a *pair* of photos: the share of same/different questions answered right. "
        "The curve below shows the trade-off between accepting the same person and rejecting "
        "strangers as the threshold moves."
    )
    return "\n\n".join(lines)


def threshold_section(card: dict, threshold: float, ident: IdentificationThreshold, normalised: bool = False) -> str:
    """The two thresholds in words; `ident` is the engine's own naming threshold (engine.naming),
    so the page states the limit the app names within, fitted or fallback; `normalised`: it
    judges cohort-normalised scores, not distances."""
    source = card.get("threshold_source") or "LFW View 1"
    lines = [
        "## What the threshold means",
        f"Two faces are called **the same person** when their distance is at most **{threshold:.3f}** "
        f"(chosen on {md_escape(source)}). The *similarity* shown beside it is a calibrated estimate "
        "of how likely the two photos are of one person; 50% sits near the threshold.",
    ]
    if normalised:
        sizes = ", ".join(f"{ident.for_gallery(n):.2f} with {n:,} people" for n in (10, 100, 1000, 10000))
        lines.append(
            "**Identify** scores each enrolled person by the distance *normalised* against a cohort of "
            "training faces (how far both faces usually are from faces of other people), and names the best "
            "only when that score is at most a limit fitted so that about "
            f"{(ident.target_far or 0.01):.0%} of strangers are named whatever the gallery's size: stricter "
            f"with more people enrolled ({sizes}); the app uses the one for its own size."
        )
    elif not ident.fallback:
        sizes = ", ".join(f"{t:.3f} with {n:,} people" for n, t in ident.by_gallery_size)
        target = f" (fitted so that about {ident.target_far:.0%} of strangers are named)" if ident.target_far else ""
        reference = f" with {ident.reference_gallery_size:,} people enrolled" if ident.reference_gallery_size else ""
        lines.append(
            f"**Identify** names someone from the gallery only when the distance is at most "
            f"**{ident.value:.3f}**{reference}{target}: stricter than comparing, because with many "
            "people enrolled a stranger has many chances to look like one of them. The limit depends on "
            f"the gallery's size{f' ({sizes})' if sizes else ''}; the app uses the one for its own size."
        )
    else:
        lines.append(
            "**Identify**: this card has no fitted identification threshold, so the app names someone "
            f"only within **{ident.value:.3f}**, a limit that controls no false-alarm rate: with many "
            "people enrolled, strangers will be named."
        )
    return "\n\n".join(lines)


def limits_section(card: dict) -> str:
    use = card.get("intended_use") or "Research and demonstration of one-shot face verification."
    return "\n\n".join(
        [
            "## What it must not be used for",
            md_escape(use),
            "- Not for decisions about people (access, policing, hiring, benefits, surveillance).\n"
            "- Not for identifying people who did not agree to be enrolled.\n"
            "- Accuracy differs between groups of people and falls with small, blurred, dark or turned faces.",
        ]
    )
