"""Static checks on the tree's shape (issue 15): the shared helpers import nothing that imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (relative imports as written: '.name')."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
    return out


def test_file_helpers_import_nothing_of_vizcap():
    """vizcap/files.py (atomic_write, write_json) is used by the checkpoint, the tokenizer, the CLI and
    train/: it must not import any of them back."""
    imports = imported_modules(ROOT / "vizcap" / "files.py")
    assert not [m for m in imports if m.startswith(".") or m.split(".")[0] == "vizcap"], imports


def test_benchmarks_import_nothing_from_tests():
    """What the benchmarks and the tests both need lives in the library or train/ (train/fabricate.py)."""
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        imports = imported_modules(path)
        assert not [m for m in imports if m.split(".")[0] in ("tests", "fabricate", "hub_fixtures", "conftest")], path
        assert '"tests"' not in path.read_text(encoding="utf-8"), f"{path}: puts tests/ on the import path"


def test_readme_layout_lists_every_module():
    """README's "Project layout" names every module of the library, train/, benchmarks/ and pages/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Project layout"):text.index("## Where to change what")]
    missing = [str(path.relative_to(ROOT)) for folder in ("vizcap", "train", "benchmarks", "pages")
               for path in sorted((ROOT / folder).rglob("*.py"))
               if path.name not in layout and not (path.name == "__init__.py" and path.parent.name in ("train", "benchmarks"))]
    assert not missing, missing
