"""python -m index: the gallery from the command line.

    python -m index enroll NAME photo.jpg [photo2.jpg ...]   one entry per photo
    python -m index enroll-folder DIR                        one sub-folder per person (or a .zip)
    python -m index search photo.jpg [-k 5]                  nearest people, and a verdict
    python -m index list [--entries]                         who is enrolled
    python -m index remove NAME | --entry ID                 delete for good
    python -m index rename OLD NEW [--merge]
    python -m index reembed [--drop-missing]                 after a model upgrade
    python -m index export FILE [--no-thumbnails]            the whole gallery as one file
    python -m index import FILE [--replace] [--max-entries N]

Options before the command: --gallery LOCATION (default $TWIN_GALLERY or data/gallery): a
folder (SQLite + FAISS), a *.db path (Milvus Lite) or milvus://host:19530/collection (a Milvus
server; https://... for a managed one, token in $TWIN_MILVUS_TOKEN),
--user NAME (the gallery of that signed-in user of the app's user scope: a sub-folder of a folder
gallery named by a hash of NAME; see index/scopes.py), --weights PATH (default
engine/weights/twin.pt), --json (machine-readable output).
Exit status: 0 done; 2 refused (no face, unknown name, bad file, a busy gallery, ...: one
"error:" line on stderr) or bad usage (as `python -m engine`).

An import trusts nothing in the file (see index/exports.py): every entry is checked as enroll
checks it and every thumbnail decoded and re-encoded; one bad entry refuses the whole file.

(About 380 lines: one sub-command per gallery operation, each its own short function.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from engine.errors import FaceError
from engine.picking import face_argument, pick_face
from engine.settings import DEFAULT_GALLERY

from .errors import GalleryError
from .exports import MAX_IMPORT_ENTRIES
from .gallery import Gallery, open_gallery
from .scopes import is_folder_location, user_folder
from .stores import gallery_exists
from .transfer import load_engine

EXIT_REFUSED = 2
#: How this CLI words a photo without the face asked for (engine.picking.pick_face's fields).
NO_FACE = "{which}: no face found."
NO_SUCH_FACE = "{which}: has {found} face(s); there is no face {number}."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m index", description="Twin face gallery.")
    parser.add_argument(
        "--gallery",
        default=DEFAULT_GALLERY,
        metavar="LOCATION",
        help="a folder (SQLite + FAISS), a *.db path (Milvus Lite) or milvus://host:19530/collection "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--user", default=None, metavar="NAME", help="work on this user's gallery (the app's --gallery-scope user)"
    )
    parser.add_argument("--weights", default=None, help="model weights (default: engine/weights/twin.pt)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("enroll", help="enroll a person from one or more photos (one entry per photo)")
    p.add_argument("name")
    p.add_argument("photos", nargs="+", metavar="photo")
    p.add_argument(
        "--face",
        type=face_argument,
        default=None,
        help="use face N (1 = most prominent) of photos of several people; without it a photo must show one face",
    )
    p.add_argument("--no-thumbnail", action="store_true", help="do not keep the aligned face crop")

    p = commands.add_parser(
        "enroll-folder",
        help="enroll everyone in a folder with one sub-folder per person "
        "(the folder name is the name), or a zip of one",
    )
    p.add_argument("folder", help="folder (or .zip) holding Name/photo.jpg ...")
    p.add_argument("--no-thumbnail", action="store_true", help="do not keep the aligned face crops")
    p.add_argument("--max-photos", type=int, default=100_000, help="refuse a collection larger than this")

    p = commands.add_parser("search", help="who is the (most prominent) face in a photo?")
    p.add_argument("photo")
    p.add_argument("-k", type=int, default=5, help="how many matches (default 5)")
    p.add_argument("--face", type=face_argument, default=1, help="which face, 1 = most prominent")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="name within this raw distance (default: the model's naming rule, as the app names)",
    )

    p = commands.add_parser("list", help="everyone enrolled")
    p.add_argument("--entries", action="store_true", help="one line per entry instead of per person")

    p = commands.add_parser("remove", help="delete a person (or one entry) for good")
    p.add_argument("name", nargs="?")
    p.add_argument("--entry", type=int, default=None, help="delete only this entry id")

    p = commands.add_parser("rename", help="rename a person")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--merge", action="store_true", help="allow renaming onto someone already enrolled")

    p = commands.add_parser("reembed", help="re-embed every entry from its thumbnail with the current model")
    p.add_argument("--drop-missing", action="store_true", help="delete entries that have no thumbnail")

    p = commands.add_parser("export", help="write the gallery to one file")
    p.add_argument("file")
    p.add_argument("--no-thumbnails", action="store_true", help="leave the face thumbnails out")

    p = commands.add_parser("import", help="add the entries of an exported gallery")
    p.add_argument("file")
    p.add_argument("--replace", action="store_true", help="replace the current entries instead")
    p.add_argument(
        "--max-entries",
        type=int,
        default=MAX_IMPORT_ENTRIES,
        help="refuse an export with more entries than this (default: %(default)s)",
    )
    return parser


class Cli:
    def __init__(self, args: argparse.Namespace, engine: Any = None, out=None):
        self.args = args
        self._engine = engine
        self.out = out or sys.stdout
        self.location = args.gallery if args.user is None else str(user_folder(args.gallery, args.user))

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = load_engine(self.args.weights, self.args.device)
        return self._engine

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def emit(self, data: Any, text: str) -> None:
        self.say(json.dumps(data, ensure_ascii=False, indent=1) if self.args.json else text)

    def gallery(self, with_engine: bool) -> Gallery:
        return open_gallery(self.location, self.engine if with_engine else None)

    def exists(self) -> bool:
        return gallery_exists(self.location)

    def pick_face(self, photo: str, number: int):
        """Face `number` of a photo (engine.picking's rule) and how many faces the photo has."""
        from engine import InvalidImage

        try:
            faces = self.engine.faces(photo)
        except (InvalidImage, OSError) as exc:
            raise GalleryError(f"{photo}: {exc}") from exc
        return pick_face(faces, number, photo, no_face=NO_FACE, no_such_face=NO_SUCH_FACE), len(faces)

    # -- commands ---------------------------------------------------------------------------
    def enroll_folder(self) -> int:
        """Bulk enrollment by index.enrollment's rules; resumable (what is there is skipped)."""
        from pathlib import Path

        from tqdm import tqdm

        from .enrollment import enroll_collection, summarize, unreadable_outcomes
        from .people_folder import FolderLimits, read_folder, read_zip

        a = self.args
        limits = FolderLimits(
            max_photos=a.max_photos,
            max_people=a.max_photos,
            max_total_bytes=1 << 40,
            max_members=10 * a.max_photos + 1000,
        )
        source = Path(a.folder)
        collection = read_zip(source, limits) if source.suffix.lower() == ".zip" else read_folder(source, limits)
        with (
            self.gallery(with_engine=True) as g,
            tqdm(total=collection.photo_count, unit="photo", disable=a.json, file=sys.stderr) as bar,
        ):

            def tick(done: int, total: int, label: str) -> None:
                bar.update(1)
                bar.set_postfix_str(label[-40:], refresh=False)

            outcomes = enroll_collection(
                self.engine, g, collection.people, thumbnails=not a.no_thumbnail, progress=tick
            )
        outcomes = unreadable_outcomes(collection.unreadable, outcomes)
        summary: dict[str, Any] = {
            **summarize(outcomes),
            "skipped": [{"file": f, "reason": why} for f, why in collection.skipped],
        }
        lines = [
            f"{summary['enrolled']} photo(s) enrolled for {summary['people']} people; "
            f"{summary['already_enrolled']} already enrolled (skipped); {len(summary['refused'])} refused; "
            f"{len(summary['skipped'])} file(s) skipped."
        ]
        lines += [f"  refused {r['photo']}: {r['reason']}" for r in summary["refused"]]
        lines += [f"  skipped {s['file']}: {s['reason']}" for s in summary["skipped"]]
        lines += [f"  warning: {w}" for w in summary["warnings"]]
        self.emit(summary, "\n".join(lines))
        return 0

    def enroll(self) -> int:
        """One person from photos, by index.enrollment's policy: exactly what the app's form
        does (quality floor, one face per photo, the same photo under another name refused,
        a look-alike name refused, a look-alike face warned about). Exit 2 when nothing was
        enrolled and nothing was there already."""
        from .enrollment import admit, candidate_from

        a = self.args
        engine = self.engine
        with self.gallery(with_engine=True) as g:
            name = g.check_name(a.name)
            candidates = [
                candidate_from(engine, photo, photo, name, thumbnails=not a.no_thumbnail, face=a.face)[0]
                for photo in a.photos
            ]
            outcome = admit(g, name, candidates, similarity=engine.similarity)
        if not outcome.entries and not outcome.duplicates:
            raise GalleryError(" ".join(f"{photo}: {why}" for photo, why in outcome.refused) or "Nothing was enrolled.")
        data = {
            "name": outcome.name,
            "entries": [{"photo": photo, "entry_id": entry} for entry, photo in outcome.entries],
            "already_enrolled": [{"photo": photo, "entry_id": entry} for entry, photo in outcome.duplicates],
            "refused": [{"photo": photo, "reason": why} for photo, why in outcome.refused],
            "warnings": outcome.warnings,
        }
        lines = [f"Enrolled {outcome.name!r} from {photo} (entry {entry})" for entry, photo in outcome.entries]
        lines += [f"Already enrolled: {photo} is entry {entry} (skipped)" for entry, photo in outcome.duplicates]
        lines += [f"Refused {photo}: {why}" for photo, why in outcome.refused]
        lines += [f"warning: {w}" for w in outcome.warnings]
        self.emit(data, "\n".join(lines))
        return 0

    def search(self) -> int:
        a = self.args
        face, count = self.pick_face(a.photo, a.face)
        engine = self.engine
        with self.gallery(with_engine=True) as g:
            matches = g.search(face.embedding, k=a.k)
            # who it is: engine.naming decides, as the app does; --threshold: a raw distance instead
            named = g.name(face.embedding, engine.naming) if a.threshold is None else None
        threshold = named.threshold if named is not None else a.threshold
        if named is not None:
            best = named.match
            scored = {c.name: c.score for c in named.candidates}
        else:
            best = matches[0] if matches and matches[0].distance <= threshold else None
            scored = {m.name: m.distance for m in matches}
        rows = [
            {
                "name": m.name,
                "entry_id": m.entry_id,
                "distance": round(m.distance, 4),
                "similarity": round(engine.similarity(m.distance), 4),
                "score": None if m.name not in scored else round(scored[m.name], 4),
                "same": m.distance <= engine.threshold,
            }
            for m in matches
        ]
        lines = [f"{a.photo}" + (f" (face {a.face} of {count})" if count > 1 else "") + ":"]
        lines += [
            f"  {i}. {r['name']}  distance {r['distance']:.3f}  similarity {r['similarity']:.2f}"
            + ("  same person" if r["same"] else "")
            for i, r in enumerate(rows, 1)
        ]
        if not matches:
            lines.append("  the gallery is empty")
        what = "normalised score" if named is not None and named.normalised else "distance"
        if named is not None:
            what += f" (threshold for {named.people} people enrolled)"
        value = (best.score if named is not None else best.distance) if best else None
        lines.append(
            f"Identified: {best.name} ({what} {value:.3f} <= {threshold:.3f})"
            if best
            else f"Identified: no one (nobody within {what} {threshold:.3f})"
        )
        self.emit(
            {"photo": a.photo, "threshold": threshold, "matches": rows, "identified": best.name if best else None},
            "\n".join(lines),
        )
        return 0

    def list(self) -> int:
        if not self.exists():
            self.emit([], f"No gallery at {self.location} yet.")
            return 0
        with self.gallery(with_engine=False) as g:
            data: list[dict[str, Any]]
            if self.args.entries:
                entries = g.entries()
                data = [
                    {
                        "entry_id": e.entry_id,
                        "name": e.name,
                        "enrolled": e.enrolled.isoformat(timespec="seconds"),
                        "model_id": e.model_id,
                        "thumbnail": e.has_thumbnail,
                    }
                    for e in entries
                ]
                text = "\n".join(
                    f"{d['entry_id']:>8}  {d['enrolled']}  {d['name']}" + ("" if d["thumbnail"] else "  (no thumbnail)")
                    for d in data
                )
            else:
                people = g.people()
                data = [
                    {
                        "name": p.name,
                        "entries": p.entries,
                        "first_enrolled": p.first_enrolled.isoformat(timespec="seconds"),
                        "last_enrolled": p.last_enrolled.isoformat(timespec="seconds"),
                    }
                    for p in people
                ]
                text = "\n".join(
                    f"{d['name']}  ({d['entries']} {'entry' if d['entries'] == 1 else 'entries'}, "
                    f"enrolled {d['first_enrolled']}" + (f" .. {d['last_enrolled']}" if d["entries"] > 1 else "") + ")"
                    for d in data
                )
            self.emit(data, text or "The gallery is empty.")
        return 0

    def remove(self) -> int:
        a = self.args
        if (a.name is None) == (a.entry is None):
            raise GalleryError("Give either a NAME or --entry ID.")
        if not self.exists():
            raise GalleryError(f"No gallery at {self.location}.")
        with self.gallery(with_engine=False) as g:
            if a.entry is not None:
                g.remove_entry(a.entry)
                removed, what = 1, f"entry {a.entry}"
            else:
                removed, what = g.remove_person(a.name), repr(a.name)
            g.vacuum()
        self.emit(
            {"removed": removed},
            f"Removed {what}: {removed} {'entry' if removed == 1 else 'entries'}, with their vectors and thumbnails.",
        )
        return 0

    def rename(self) -> int:
        a = self.args
        if not self.exists():
            raise GalleryError(f"No gallery at {self.location}.")
        with self.gallery(with_engine=False) as g:
            count = g.rename_person(a.old, a.new, merge=a.merge)
        self.emit({"renamed": count}, f"Renamed {a.old!r} to {a.new!r} ({count} entries).")
        return 0

    def reembed(self) -> int:
        if not self.exists():
            raise GalleryError(f"No gallery at {self.location}.")
        engine = self.engine
        with self.gallery(with_engine=True) as g:

            def progress(done: int, total: int) -> None:
                if not self.args.json:
                    print(f"\r  re-embedded {done}/{total}", end="", file=sys.stderr, flush=True)

            count = g.reembed(
                engine.embed_crops, engine.model_id, drop_missing=self.args.drop_missing, progress=progress
            )
            if not self.args.json and count:
                print(file=sys.stderr)
            left = len(g)
        self.emit(
            {"reembedded": count, "entries": left, "model_id": engine.model_id},
            f"Re-embedded {count} entries with model {engine.model_id}.",
        )
        return 0

    def export(self) -> int:
        if not self.exists():
            raise GalleryError(f"No gallery at {self.location}.")
        with self.gallery(with_engine=False) as g:
            count = g.export(self.args.file, thumbnails=not self.args.no_thumbnails)
        self.emit({"exported": count, "file": self.args.file}, f"Exported {count} entries to {self.args.file}.")
        return 0

    def import_(self) -> int:
        """By the enrollment policy (index.enrollment.ImportPolicy): what is there already is
        skipped, the same face under another name and look-alike names are refused."""
        with self.gallery(with_engine=False) as g:
            count = g.import_from(self.args.file, replace=self.args.replace, max_entries=self.args.max_entries)
            model = g.stored_model_id if count else None
        refused = [{"entry": e, "name": n, "reason": why} for e, n, why in count.refused]
        lines = [
            f"Imported {int(count)} entries from {self.args.file}"
            + (f" (model {model})" if model else "")
            + f"; {count.already_enrolled} already enrolled (skipped); {len(refused)} refused."
        ]
        lines += [f"  refused entry {r['entry']} ({r['name']}): {r['reason']}" for r in refused]
        self.emit(
            {"imported": int(count), "already_enrolled": count.already_enrolled, "refused": refused, "model_id": model},
            "\n".join(lines),
        )
        return 0


def main(argv: Sequence[str] | None = None, engine: Any = None, out=None) -> int:
    args = build_parser().parse_args(argv)
    if args.user is not None and not is_folder_location(args.gallery):
        print("error: --user needs a folder gallery (a gallery per user on Milvus is not built yet)", file=sys.stderr)
        return EXIT_REFUSED
    cli = Cli(args, engine=engine, out=out)
    handler = getattr(cli, "import_" if args.command == "import" else args.command.replace("-", "_"))
    try:
        return handler()
    except (GalleryError, FaceError, ValueError, LookupError, OSError) as exc:
        print("error: " + (" ".join(str(exc).split()) or type(exc).__name__), file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
