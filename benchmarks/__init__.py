"""vizcap's benchmarks: `python benchmarks/run.py` (or `python -m benchmarks.run`) runs them; see run.py."""

import os

os.environ.setdefault("TQDM_DISABLE", "1")
