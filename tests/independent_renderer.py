"""The independent renderer now lives in the library (vizcap/independent_renderer.py, which imports
nothing from vizcap) so that `vizcap eval --independent` can use it; tests import it from here."""

from vizcap.independent_renderer import caption_objects, main, render_independent  # noqa: F401

if __name__ == "__main__":
    main()
