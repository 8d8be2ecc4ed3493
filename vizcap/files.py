"""Small file helpers shared by the library, train/ and the app, and where the shipped checkpoint
lives. This module imports nothing of vizcap, so any module may use it without an import cycle."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SHIPPED = Path(__file__).parent / "checkpoints"  # the checkpoints that ship inside the package, one folder each
DEFAULT_CHECKPOINT = SHIPPED / "shapes"  # the shipped ShapeScenes model
# Every shipped checkpoint by name, with the title people see (model picker, exports, CLI). The twin
# was trained by the same recipe with no loss on any map, so its maps are evidence (issue 24).
SHIPPED_TITLES = {
    "shapes": "ShapeScenes — attention trained to point",
    "shapes-free": "ShapeScenes — attention left free",
}


def shipped_checkpoint(name: str) -> Path | None:
    """The shipped checkpoint folder called `name` ("shapes"), or None: vizcap.load("shapes") and
    --checkpoint shapes open it when no folder of that name is in the current directory."""
    folder = SHIPPED / name
    return folder if name and "/" not in name and name not in (".", "..") and (folder / "config.json").is_file() else None


def shipped_names() -> list[str]:
    """The shipped checkpoints present in this installation, in SHIPPED_TITLES' order."""
    return [name for name in SHIPPED_TITLES if shipped_checkpoint(name)]


def shipped_title(folder) -> str | None:
    """The title of a shipped checkpoint given its folder (any spelling of the path), else None."""
    try:
        path = Path(folder).resolve()
    except (OSError, TypeError, ValueError):
        return None
    if path.parent != SHIPPED.resolve():
        return None
    return SHIPPED_TITLES.get(path.name)


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path) then move tmp_path over `path`, so a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before it takes the name: a power cut keeps the old file
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj) -> None:
    """`obj` as indented JSON (one trailing newline), written atomically."""
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(obj, indent=2) + "\n"))
