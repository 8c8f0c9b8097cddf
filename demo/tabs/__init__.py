"""One module per tab. Each has `build(ctx)`: it lays out its tab and wires its events.

A tab's handlers turn Gradio's input shapes into plain values (demo.inputs), call the
service, and hand its results to demo.render; they hold no logic of their own. Events that
reach into another tab (Enroll refreshing the Gallery's table) go through `ctx.after_change`,
which the Gallery tab fills in; `ctx.later` runs once every tab exists.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from engine import FaceError
from engine.identification import IdentificationThreshold
from index.scopes import ScopeRefused

from ..files import ResultFiles
from ..inputs import PhotoInput, is_present, photo_input
from ..service import TwinService, UserError
from ..sessions import ScopedFiles

log = logging.getLogger("twin.demo")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: Events that only redraw the page: not API endpoints, not queued.
CLEAR: dict[str, Any] = dict(queue=False, api_visibility="private", show_progress="hidden")


@dataclass
class TabContext:
    """What every tab may use: the service, the picture files, the model's facts."""

    service: TwinService
    files: ResultFiles | ScopedFiles  # the caller's own picture files (demo/sessions.py)
    model_id: str
    threshold: float
    card: dict
    identification: IdentificationThreshold  # the engine's naming threshold: when Identify may name someone
    after_change: list[dict] = field(default_factory=list)  # events that refresh the Gallery tab
    on_load: list[dict] = field(default_factory=list)  # events run when the page opens
    later: list[Callable[[], None]] = field(default_factory=list)

    def picture(self, image) -> str | None:
        return self.files.picture(image)

    def thumbnail(self, entry_id: Any) -> str | None:
        return self.files.thumbnail(entry_id, self.service.thumbnail)


def shown(message: str) -> str:
    """gr.Error, gr.Warning and gr.Info render HTML: escape what may contain user-typed text."""
    return html.escape(message, quote=False)


def guarded(fn: Callable) -> Callable:
    """User mistakes become gr.Error(message); bugs are logged and shown without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (UserError, FaceError, ScopeRefused) as exc:  # ScopeRefused: a session bound, in words
            raise gr.Error(shown(str(exc)), print_exception=False) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(
                "Something went wrong on our side; the error has been logged. Please try again, or with another photo.",
                print_exception=False,
            ) from None

    return wrapper


def photo(value: Any, label: str) -> PhotoInput | None:
    """A photo field of a request: None when empty; refused unless it is the client's own upload."""
    return photo_input(value, label) if is_present(value) else None


def photos(values: Any) -> list[PhotoInput]:
    """A multi-file field of a request (one value or a list), each refused unless uploaded."""
    if not is_present(values) or values == []:
        return []
    if not isinstance(values, (list, tuple)):
        values = [values]
    return [photo_input(v, f"photo {i + 1}") for i, v in enumerate(values) if is_present(v)]


def example(*names: str) -> list[str]:
    return [str(EXAMPLES / name) for name in names]
