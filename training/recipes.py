"""Training recipes as files: configs/NAME.json, each a few keys over a base recipe.

    {"base": "default", "name": "margin-0.8", "margin": 0.8}

`base` names another recipe file (or "defaults": the TrainConfig defaults); nested keys
(`model`, `augment`) are merged key by key. `python -m training.train --config NAME` trains
one; the bench names them; the model card records the recipe by name and content.
Training only: nothing here is imported by inference.

    python -m training.recipes needs-teacher NAME   # exit 0 if NAME distills (needs `make teacher`), else 1

`make train` asks the recipe itself whether the teacher's targets must be cached first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.settings import CONFIGS_DIR as CONFIGS


def recipe_path(name: str | Path) -> Path:
    """configs/NAME.json (NAME may hold a sub-folder, e.g. ablations/grey), or a path to a JSON file."""
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return path
    found = CONFIGS / f"{name}.json"
    if not found.is_file():
        known = sorted(str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.rglob("*.json"))
        raise FileNotFoundError(f"No recipe {name!r}: expected {found}. Known: {', '.join(known)}")
    return found


def resolve(name: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recipe's keys with every base merged in (the bottom base: {} = TrainConfig defaults)."""
    path = recipe_path(name)
    if str(path) in _seen:
        raise ValueError(f"recipe bases form a loop: {' -> '.join(_seen)} -> {path}")
    own = json.loads(path.read_text())
    base_name = own.pop("base", None)
    own.pop("about", None)
    base = {} if base_name in (None, "defaults") else resolve(base_name, (*_seen, str(path)))
    return _merge(base, own)


def _merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in own.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def about(name: str | Path) -> str:
    """The recipe file's one-line description ("about"), for tables."""
    return str(json.loads(recipe_path(name).read_text()).get("about", ""))


def ablations() -> list[str]:
    """Every recipe under configs/ablations/, by name."""
    return sorted(f"ablations/{p.stem}" for p in (CONFIGS / "ablations").glob("*.json"))


def needs_teacher(name: str | Path) -> bool:
    """Whether the resolved recipe weighs a loss term that needs the teacher's targets above 0
    (training.loss.LOSS_TERMS; TrainConfig.distills), so that training needs them cached (`make teacher`)."""
    from .loss import needs_teacher as weighs_teacher_terms

    return weighs_teacher_terms(resolve(name))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ask a training recipe (configs/NAME.json) about itself.")
    sub = parser.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("needs-teacher", help="exit 0 when the recipe distills from the teacher, 1 when not")
    ask.add_argument("name", help="a recipe: configs/NAME.json by NAME, or a JSON file")
    args = parser.parse_args(argv)
    try:
        needed = needs_teacher(args.name)
    except (OSError, TypeError, ValueError) as error:  # no such recipe, a base loop, unreadable JSON
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if needed else 1


if __name__ == "__main__":
    sys.exit(main())
