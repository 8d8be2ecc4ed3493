"""vizcap: see where an image captioner looks while it writes each word."""

from .captioner import Captioner, CheckpointError
from .families import load
from .images import ImageError, open_image
from .model import CaptionerConfig, CaptionModel

__all__ = ["Captioner", "CaptionerConfig", "CaptionModel", "CheckpointError", "ImageError", "load", "open_image"]
__version__ = "0.1.0"
