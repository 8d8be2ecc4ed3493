"""vizcap: see where an image captioner looks while it writes each word.

The public names are imported on first use (PEP 562), so `vizcap --help` and other light uses of the
package start without importing torch, timm and transformers (seconds on a laptop)."""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_PUBLIC = {
    "Captioner": ".captioner",
    "CheckpointError": ".backend",
    "load": ".families",
    "ImageError": ".images",
    "open_image": ".images",
    "CaptionerConfig": ".model",
    "CaptionModel": ".model",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'vizcap' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
