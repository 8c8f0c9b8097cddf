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


#: What a person is told when something fails that is not their doing (details go to the log).
INTERNAL = "Something went wrong on our side; the error has been logged. Please try again, or with another photo."


def guarded(fn: Callable) -> Callable:
    """User mistakes become gr.Error(message); bugs are logged and shown without a traceback.

    This is the API's behaviour (gradio_client raises AppError(message)). The page's own
    events go through `on_page`, which puts the same words in the tab's result area.
    """

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
            raise gr.Error(INTERNAL, print_exception=False) from None

    return wrapper


def on_page(fn: Callable, failed: Callable[[str], Any]) -> Callable:
    """The page's version of a guarded handler: a refusal never puts a component into Gradio's
    error state (a bare red "Error" badge on every output); `failed(message)` gives the outputs
    that say why in the result area, where it stays until the next action, and a toast says it too.

    `message` is plain text (escape it for where it goes: render.md_escape for Markdown).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            message = html.unescape(str(exc.message))
        gr.Warning(shown(message))
        return failed(message)

    wrapper.__name__ = f"{fn.__name__}_on_page"  # Gradio names events after fn: keep the API's names free
    return wrapper


def api_endpoint(ctx: TabContext, fn: Callable, inputs: Any, outputs: Any, api_name: str, **kwargs: Any) -> None:
    """An API endpoint on a hidden trigger, so the page's visible buttons can run `on_page`
    versions of it while gradio_client keeps its AppError for refused input.

    The trigger is made once every tab exists (ctx.later): a component inside gr.Tabs but
    outside a gr.Tab would become a tab of its own."""

    def make() -> None:
        trigger = gr.Button(visible=False, elem_classes="twin-api")
        trigger.click(fn, inputs, outputs, api_name=api_name, **kwargs)

    ctx.later.append(make)


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
