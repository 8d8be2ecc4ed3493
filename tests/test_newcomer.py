"""A newcomer's first minutes (issue 26): `vizcap --help` appears at once (parsing the command line
imports no torch, timm or transformers, seconds on a laptop: the test looks at which modules the help
text pulled in, not at a clock); the example pictures README uses ship; `streamlit run` watches no
files (a virtual environment inside the repository flooded inotify)."""

from __future__ import annotations

import pytest

from conftest import run_module

HEAVY = ("torch", "timm", "transformers", "torchvision")
PROBE = """
import sys
from vizcap.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--help"], ["caption", "--help"], ["eval", "--help"]])
def test_help_imports_no_heavy_library(argv):
    result = run_module("-c", PROBE.format(argv=argv, heavy=HEAVY))
    assert result.returncode == 0, result.stderr
    assert "usage: vizcap" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout.splitlines()[-1]


def test_public_names_still_import():
    import vizcap

    assert callable(vizcap.load) and issubclass(vizcap.CheckpointError, ValueError)
    assert set(vizcap.__all__) <= set(dir(vizcap))
    with pytest.raises(AttributeError):
        vizcap.no_such_name


def test_example_pictures_are_what_their_command_writes(tmp_path):
    """README's commands use examples/scene.png and examples/photo.jpg: they ship, and the scenes are the
    ones `python examples/make_examples.py` draws."""
    import numpy as np
    from PIL import Image

    from conftest import ROOT
    from vizcap.scenes import render_scene

    for name, seed in {"scene.png": 7, "scene42.png": 42}.items():
        shipped = np.asarray(Image.open(ROOT / "examples" / name).convert("RGB"))
        assert np.array_equal(shipped, np.asarray(render_scene(seed).image.convert("RGB"))), name
    assert Image.open(ROOT / "examples" / "photo.jpg").size == (451, 300)
    readme = (ROOT / "README.md").read_text()
    assert "examples/scene.png" in readme and "examples/photo.jpg" in readme


def test_streamlit_run_watches_no_files():
    """Streamlit's file watcher schedules the app's folder recursively: with README's .venv inside the
    repository (~44,000 files) it printed thousands of "Inotify queue overflowed" lines. Measured with a
    fake 882-folder .venv: 926 inotify watches with the default, 0 with this setting."""
    import shutil

    from conftest import ROOT

    streamlit = shutil.which("streamlit")
    assert streamlit, "streamlit is not installed"
    import subprocess

    shown = subprocess.run([streamlit, "config", "show"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert '\nfileWatcherType = "none"\n' in shown
