"""Twin's web app: compare two faces, enroll people, identify faces, manage the gallery.

    python app.py [--host 127.0.0.1] [--port 7860] [--gallery ./data/gallery]
                  [--share] [--auth USER:PASS] [--auth-file FILE] [--no-thumbnails] [--device cpu|cuda]
                  [--trust-proxy ADDRESS] [--upload-quota CLIENT_MB:TOTAL_MB]
                  [--gallery-scope shared|session|user] [--session-idle SECONDS] [--max-sessions N]

Also the entry point of the Hugging Face Space (which runs `python app.py` with no
arguments; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, TWIN_GALLERY and TWIN_GALLERY_SCOPE set the defaults
there; on a Space each visitor gets a gallery of their own unless TWIN_GALLERY_SCOPE says otherwise).
"""

from __future__ import annotations

import os

# Privacy first: no usage analytics or telemetry unless someone turns them on explicitly.
# Set before gradio (and huggingface_hub) are imported: they read these at import time.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

try:  # ZeroGPU Spaces: `spaces` must be imported before torch; elsewhere it is absent.
    import spaces  # type: ignore  # noqa: E402
except ImportError:
    spaces = None

import torch  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from demo.clients import ProxyHeaders, parse_networks  # noqa: E402
from demo.fairness import FairQueue  # noqa: E402
from demo.freshness import middleware as fresh_files  # noqa: E402
from demo.guard import BodyLimit, LoginThrottle  # noqa: E402
from demo.headers import SecurityHeaders  # noqa: E402
from demo.inputs import MAX_PHOTO_BYTES, upload_folder  # noqa: E402
from demo.paths import HidePaths  # noqa: E402
from demo.service import Limits  # noqa: E402
from demo.sessions import ScopedFiles, VisitorGuard, scoped  # noqa: E402
from demo.streams import OpenRoutes  # noqa: E402
from demo.ui import LAUNCH_CSS, build_demo  # noqa: E402
from demo.uploads import UploadQuota, empty_at_exit, instance_folder  # noqa: E402
from engine import FaceEngine, FaceError  # noqa: E402
from engine.settings import DEFAULT_GALLERY, GALLERY_SCOPE, ON_SPACE  # noqa: E402
from index import GalleryError  # noqa: E402
from index.scopes import SCOPES, USER, ScopeLimits, default_scope, is_folder_location  # noqa: E402

ROOT = Path(__file__).resolve().parent
#: Uploads above this are refused by the server before they reach the engine.
MAX_UPLOAD = f"{MAX_PHOTO_BYTES // 2**20}mb"
#: An API call's body: at most two photos inline (base64 is 4/3 of the bytes), plus the rest.
MAX_BODY = 2 * (MAX_PHOTO_BYTES * 4 // 3) + (256 << 10)
#: The upload route's body: one Enroll's worth of photos (Gradio checks each file's size too).
MAX_UPLOAD_BODY = Limits().max_enroll_photos * MAX_PHOTO_BYTES + (1 << 20)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Twin: face comparison, enrollment and identification in the browser.")
    p.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on (0.0.0.0 for every interface; default %(default)s)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port to listen on (default %(default)s)",
    )
    p.add_argument(
        "--gallery",
        default=DEFAULT_GALLERY,
        metavar="LOCATION",
        help="where the enrolled people are (created if missing; default %(default)s): a folder "
        "(SQLite + FAISS), a *.db path (Milvus Lite) or milvus://host:19530/collection (a Milvus "
        "server; https://host/collection for a managed one, token in $TWIN_MILVUS_TOKEN)",
    )
    p.add_argument(
        "--share", action="store_true", help="also make a temporary public link through gradio.live (use with --auth)"
    )
    p.add_argument(
        "--auth",
        metavar="USER:PASS",
        help="require this user name and password to open the app (recommended with --share)",
    )
    p.add_argument(
        "--auth-file",
        metavar="FILE",
        help="require sign-in as one of the users in FILE (one USER:PASSWORD a line; # starts a comment)",
    )
    p.add_argument(
        "--gallery-scope",
        choices=SCOPES,
        default=GALLERY_SCOPE,
        help="whose gallery a visitor sees: one shared by all, one per browser session (temporary), or "
        "one per signed-in user (persistent). Default: $TWIN_GALLERY_SCOPE, else session when others "
        "can reach the app (--share, a Space, a non-loopback --host), else shared",
    )
    p.add_argument(
        "--session-idle",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="a session gallery unused this long is deleted (default %(default)g)",
    )
    p.add_argument(
        "--max-sessions", type=int, default=100, metavar="N", help="session galleries at once (default %(default)s)"
    )
    p.add_argument(
        "--session-people", type=int, default=20, metavar="N", help="people per session gallery (default %(default)s)"
    )
    p.add_argument(
        "--session-photos", type=int, default=60, metavar="N", help="photos per session gallery (default %(default)s)"
    )
    p.add_argument(
        "--no-thumbnails",
        action="store_true",
        help="do not store face thumbnails in the gallery (only names and embeddings)",
    )
    p.add_argument("--device", default=None, help="torch device for the engine (default: cuda when available)")
    p.add_argument(
        "--trust-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="the address (or network) of a reverse proxy in front of the app: its X-Forwarded-For "
        "is believed, nobody else's (repeatable; default: no proxy, forwarding headers ignored)",
    )
    p.add_argument(
        "--upload-quota",
        default="256:2048",
        metavar="CLIENT_MB:TOTAL_MB",
        help="upload space per client and for everyone, in flight plus on disk (default %(default)s)",
    )
    args = p.parse_args(argv)
    if args.share and not args.trust_proxy:  # a --share visitor arrives through the local tunnel client
        args.trust_proxy = ["127.0.0.1", "::1"]
    try:
        args.trust_proxy = parse_networks(args.trust_proxy)
    except ValueError as exc:
        p.error(f"--trust-proxy: {exc}")
    client_mb, _, total_mb = args.upload_quota.partition(":")
    if not (client_mb.isascii() and client_mb.isdigit() and total_mb.isascii() and total_mb.isdigit()):
        p.error("--upload-quota must be CLIENT_MB:TOTAL_MB, two whole numbers")
    args.upload_quota = (int(client_mb) << 20, int(total_mb) << 20)
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            p.error("--auth must be USER:PASS, with a non-empty user name and password")
        args.auth = (user, password)
    users = [args.auth] if args.auth is not None else []
    if args.auth_file is not None:
        try:
            users += read_auth_file(args.auth_file)
        except (OSError, ValueError) as exc:
            p.error(f"--auth-file: {exc}")
    args.users = users
    if args.gallery_scope is not None and args.gallery_scope not in SCOPES:
        p.error(f"TWIN_GALLERY_SCOPE must be one of {', '.join(SCOPES)}, not {args.gallery_scope!r}")
    if args.session_idle <= 0 or min(args.max_sessions, args.session_people, args.session_photos) < 1:
        p.error("--session-idle, --max-sessions, --session-people and --session-photos must be positive")
    return args


def read_auth_file(path: str) -> list[tuple[str, str]]:
    """USER:PASSWORD lines (blank lines and # comments skipped); a bad line is named by number only."""
    users: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"line {number} is not USER:PASSWORD with a non-empty user name and password")
        users[user.strip()] = password
    if not users:
        raise ValueError(f"{path} names no user")
    return list(users.items())


def concurrency_limit(device_type: str) -> int:
    """How many requests of one endpoint the engine may serve at once on this machine.

    Gradio applies the limit per endpoint (each has its own concurrency id), so /identify and
    /enroll each get this many. On a CPU it is one more than the cores, at least three, with
    one torch thread per request (`torch_threads`): two users' heavy photos (bounded, but still
    seconds of detection) then share the cores with a third user's small photo instead of
    making it wait in the queue. Throughput is the same either way; only fairness changes.
    """
    if device_type == "cuda":
        return 4
    return max(3, min(8, (os.cpu_count() or 2) + 1))


def torch_threads(device_type: str, concurrent: int) -> int:
    """Intra-op threads per request, so `concurrent` requests share the cores fairly."""
    cores = os.cpu_count() or 2
    return max(1, cores // concurrent) if device_type != "cuda" else max(1, min(4, cores))


def on_zero_gpu(engine: FaceEngine) -> FaceEngine:
    """On a ZeroGPU Space, run the network calls inside `spaces.GPU` (a no-op elsewhere)."""
    if spaces is not None:
        engine.faces_batch = spaces.GPU(engine.faces_batch)  # type: ignore[method-assign]
    return engine


def open_gallery(location: str | Path, engine: FaceEngine, thumbnails: bool = True):
    """The gallery for this engine's embeddings (created when missing): a folder (SQLite +
    FAISS), a *.db path (Milvus Lite) or a milvus:// / https:// URL (a Milvus server)."""
    import index

    return index.open_gallery(str(location), engine, thumbnails=thumbnails)


def middleware(args: argparse.Namespace, uploads: Path, files: ScopedFiles | None = None) -> list[Middleware]:
    """In front of Gradio's own routes, outermost first: who the client is, security headers,
    the body cap, server paths hidden, the upload quota, pre-sign-in routes and open streams,
    the sign-in throttle, and the visitor cookie that keeps a private gallery's picture URLs to
    its own visitor (innermost: it sees the paths HidePaths mapped back)."""
    per_client, total = args.upload_quota
    return [
        Middleware(ProxyHeaders, trusted=args.trust_proxy),
        Middleware(SecurityHeaders),
        Middleware(BodyLimit, limit=MAX_BODY, upload_limit=MAX_UPLOAD_BODY),
        Middleware(HidePaths, folder=str(uploads)),
        Middleware(UploadQuota, folder=uploads, per_client=per_client, total=total, limit=MAX_UPLOAD_BODY),
        Middleware(OpenRoutes),
        Middleware(LoginThrottle),
        Middleware(VisitorGuard, files=files),
    ]


def own_upload_folder(gallery: str, port: int) -> Path:
    """This instance's upload folder (see demo/uploads.py), made Gradio's through GRADIO_TEMP_DIR."""
    import atexit

    folder = instance_folder(upload_folder(), f"{gallery}|{port}")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(empty_at_exit, folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        engine = on_zero_gpu(FaceEngine(device=args.device))
    except FaceError as exc:  # ModelNotFound: the message says how to make the weights
        print(f"twin: {exc}", file=sys.stderr)
        return 1
    try:
        gallery = open_gallery(args.gallery, engine, thumbnails=not args.no_thumbnails)
    except (ValueError, OSError, GalleryError) as exc:
        print(f"twin: cannot open the gallery in {args.gallery}: {exc}", file=sys.stderr)
        return 1
    if gallery.model_mismatch:  # made with other weights: Compare works, the gallery does not
        print(f"twin: warning: {gallery.model_mismatch}", file=sys.stderr)
    gallery_key = args.gallery if "://" in str(args.gallery) else str(Path(args.gallery).resolve())
    uploads = own_upload_folder(gallery_key, args.port)
    os.environ["FORWARDED_ALLOW_IPS"] = ""  # uvicorn trusts 127.0.0.1's X-Forwarded-For; demo/clients.py decides
    scope = args.gallery_scope or default_scope(args.share, args.host, ON_SPACE)
    if scope == USER and not is_folder_location(args.gallery):
        print(
            "twin: --gallery-scope user needs a folder gallery (SQLite + FAISS); a gallery per user on "
            "Milvus is not built yet. Use a folder for --gallery, or --gallery-scope session.",
            file=sys.stderr,
        )
        return 2
    if scope == USER and not args.users:
        print(
            "twin: warning: user scope without --auth/--auth-file: nobody signs in, so every visitor gets "
            "a session gallery",
            file=sys.stderr,
        )
    limits = ScopeLimits(args.max_sessions, args.session_people, args.session_photos, args.session_idle)
    scopes, files = scoped(
        scope,
        lambda folder: open_gallery(folder, engine, thumbnails=not args.no_thumbnails),
        shared=gallery,
        users_root=args.gallery if scope == USER else None,
        limits=limits,
    )
    demo = build_demo(engine, gallery, thumbnails=not args.no_thumbnails, scopes=scopes, files=files)
    concurrent = concurrency_limit(engine.device.type)
    torch.set_num_threads(torch_threads(engine.device.type, concurrent))
    # api_open=False: the direct /run route refuses queued events, so every action waits its turn.
    demo.queue(default_concurrency_limit=concurrent, max_size=64, api_open=False)
    FairQueue(demo._queue).install()
    if args.share and not args.users and scope == "shared":
        print(
            "twin: warning: --share without --auth: anyone with the link can use the app "
            "and see and change the gallery.",
            file=sys.stderr,
        )
    where = args.gallery if "://" in str(args.gallery) else Path(args.gallery).resolve()
    print(f"twin: model {engine.model_id} on {engine.device}, gallery {where} ({len(gallery)} entries)", flush=True)
    print(f"twin: gallery scope {scope}: {scopes.describe_scope()}", flush=True)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=args.users or None,
        auth_message="Twin: please sign in." if args.users else None,
        max_file_size=MAX_UPLOAD,
        prevent_thread_lock=True,
        show_error=False,  # user errors are shown as messages; tracebacks stay in the log
        quiet=False,
        footer_links=["api", "gradio", "settings"],
        run_history=False,  # photos of faces are not kept in the visitor's browser
        enable_monitoring=False,
        ssr_mode=False,
        css=LAUNCH_CSS,
        app_kwargs={"middleware": middleware(args, uploads, files) + fresh_files(demo)},  # fresh_files: issue 19 row 10
    )
    if args.share and not demo.share_url:
        print(
            "twin: the public link could not be made (no internet connection, or gradio.live "
            f"is unreachable); serving locally only at {demo.local_url}",
            file=sys.stderr,
            flush=True,
        )
    print(f"twin: ready at {demo.local_url}", flush=True)
    # A stop (docker, systemd, a test) exits through the finally below: session galleries are deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        scopes.close()  # session galleries are deleted; user galleries stay
    return 0


if __name__ == "__main__":
    sys.exit(main())
