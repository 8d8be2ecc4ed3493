"""Static checks on the tree's shape (issues 15 and 23): the shared helpers import nothing that imports them, the
library never imports Streamlit, and the app routes through its entry point with Streamlit's public API only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
    """README's "Project layout" names every module of the library, train/, benchmarks/ and app_pages/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Project layout"):text.index("## Where to change what")]
    missing = [str(path.relative_to(ROOT)) for folder in ("vizcap", "train", "benchmarks", "app_pages")
               for path in sorted((ROOT / folder).rglob("*.py"))
               if path.name not in layout and not (path.name == "__init__.py" and path.parent.name in ("train", "benchmarks"))]
    assert not missing, missing


def test_no_import_cycles():
    """No module of vizcap/, train/, app_pages/ or benchmarks/ imports, directly or through others, a
    module that imports it back (every import counts, also those inside functions)."""
    modules = {}
    for folder in ("vizcap", "train", "app_pages", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for imported in imported_modules(path):
            dots = len(imported) - len(imported.lstrip("."))
            if dots:
                base = package.split(".")[: len(package.split(".")) - dots + 1]
                imported = ".".join(base + ([imported.lstrip(".")] if imported.lstrip(".") else []))
            deps.add(imported)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # from . import hub: the module vizcap.hub
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    for dep in list(deps):
                        if f"{dep}.{alias.name}" in modules:
                            deps.add(f"{dep}.{alias.name}")
        graph[name] = {d for d in deps if d in modules and d != name and not name.startswith(d + ".")}

    def reaches(start, goal, seen):
        for nxt in graph[start] - seen:
            seen.add(nxt)
            if nxt == goal or reaches(nxt, goal, seen):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert not cycles, cycles


def kind_switches(path: Path) -> list[int]:
    """Lines of `path` that compare a `.kind` (or getattr(x, "kind", ...)) with something: code asking
    which family a model belongs to, instead of asking the model (vizcap/families/)."""
    def is_kind(node) -> bool:
        return ((isinstance(node, ast.Attribute) and node.attr == "kind")
                or (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1
                    and getattr(node.args[1], "value", None) == "kind"))

    return sorted(node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Compare) and any(is_kind(n) for n in [node.left, *node.comparators]))



@pytest.mark.parametrize("folder", ["vizcap", "train", "benchmarks", "app_pages", "streamlit_app.py"])
def test_no_kind_switches_outside_the_families(folder):
    """Only a family's adapter (vizcap/families/) knows its family; everything else reads the backend's
    attributes (family_label, is_photo_model, decodes_text, decoder_module_prefixes)."""
    root = ROOT / folder
    paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
    found = {str(p.relative_to(ROOT)): kind_switches(p) for p in paths
             if (ROOT / "vizcap" / "families") not in p.parents}
    assert not {p: lines for p, lines in found.items() if lines}


def test_kind_switch_check_sees_a_switch(tmp_path):
    """The check above would notice one (both spellings the code base used)."""
    path = tmp_path / "switch.py"
    path.write_text('a = x if cap.kind == "blip" else y\nb = getattr(cap, "kind", "vizcap") != "vizcap"\nc = kind == 1\n')
    assert kind_switches(path) == [1, 2]

APP_FILES = [ROOT / "streamlit_app.py", *sorted((ROOT / "app_pages").rglob("*.py"))]
PAGE_FILES = sorted((ROOT / "app_pages").glob("*.py"))  # the pages themselves, not their shared glue


def test_the_library_never_imports_streamlit():
    """vizcap/ is used by the CLI, train/ and the benchmarks without Streamlit installed or running."""
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "vizcap").rglob("*.py"))
                 if any(m.split(".")[0] == "streamlit" for m in imported_modules(path))]
    assert not offenders, offenders


def test_the_app_uses_no_private_streamlit_name():
    """The app imports `streamlit` itself and nothing below it (streamlit.runtime, streamlit.web … are
    internals that change between releases), and names none of the internals it once relied on."""
    private = ("PagesManager", "uses_pages_directory", "get_script_run_ctx", "_get_script_run_ctx", "st._",
               "streamlit.runtime", "streamlit.web", "streamlit.elements", "script_runner")
    for path in APP_FILES:
        text = path.read_text(encoding="utf-8")
        deep = [m for m in imported_modules(path) if m.startswith("streamlit.")]
        assert not deep, f"{path.relative_to(ROOT)} imports {deep}"
        named = [name for name in private if name in text]
        assert not named, f"{path.relative_to(ROOT)} names {named}"


def test_the_entry_point_draws_the_sidebar_and_pages_draw_only_their_page():
    """streamlit_app.py draws the model picker once and routes with st.navigation(...).run(); no page
    draws the sidebar's picker or the style itself, or registers pages."""
    entry = (ROOT / "streamlit_app.py").read_text(encoding="utf-8")
    assert entry.count("checkpoint_picker()") == 1 and "st.navigation(" in entry and ".run()" in entry
    assert PAGE_FILES, "no page found in app_pages/"
    for path in PAGE_FILES:
        text = _code_only(path)  # comments may name them ("widgets.STYLE keeps cards 9rem wide")
        for call in ("sidebar(", "checkpoint_picker(", "st.navigation(", "STYLE", "set_page_config("):
            assert call not in text, f"{path.relative_to(ROOT)} calls {call}"


def _code_only(path: Path) -> str:
    """The file's text without its comments."""
    import io
    import tokenize

    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return tokenize.untokenize((t.type, t.string) for t in tokens if t.type != tokenize.COMMENT)


def test_every_page_file_is_registered_once():
    """Each file in app_pages/ is a page of the entry point's st.navigation, named there exactly once."""
    entry = (ROOT / "streamlit_app.py").read_text(encoding="utf-8")
    for path in PAGE_FILES:
        assert entry.count(f'st.Page("app_pages/{path.name}"') == 1, path.name


def test_no_pages_folder_beside_the_entry_point():
    """A folder named pages/ beside streamlit_app.py switches a fresh Streamlit process (1.67) to its
    automatic page list for a first visit to /explorer: the app's pages live in app_pages/ (README)."""
    assert not (ROOT / "pages").exists()
