"""Karpathy split files (COCO, Flickr8k, Flickr30k) and the datasets built on them.

A Karpathy JSON (`dataset_coco.json`, `dataset_flickr8k.json`, `dataset_flickr30k.json`) lists

    {"dataset": "coco",
     "images": [{"filepath": "val2014",            # COCO only; Flickr files sit in one folder
                 "filename": "COCO_val2014_000000391895.jpg",
                 "split": "train" | "restval" | "val" | "test",
                 "sentences": [{"raw": "A man riding a bike.", "tokens": ["a", "man", ...]}, ...]},
                ...]}

and an image lives at IMAGE_ROOT/filepath/filename. "restval" images join the training split (the
usual practice, and what ClipCap and most COCO captioners do). Captions are the `raw` strings (the
`tokens` joined by spaces where `raw` is missing).

Training samples are (image, caption) pairs. Sample position p (p = step · global batch + i) is
pair `order(p // n)[p % n]`, where `order(e)` is a permutation fixed by (seed, epoch e): the data
order is a pure function of the step, which is what makes resuming, and splitting a global batch
across processes, exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATASETS = ("coco", "flickr8k", "flickr30k")
SPLITS = ("train", "val", "test")
SPLIT_OF = {"train": "train", "restval": "train", "val": "val", "test": "test"}


@dataclass(frozen=True)
class Photo:
    key: str  # filepath/filename as the JSON names it: a stable id for the image
    path: Path  # where the image file is
    captions: tuple[str, ...]


def read_karpathy(json_path: str | Path, image_root: str | Path, check_files: bool = True,
                  expect: str | None = None) -> dict[str, list[Photo]]:
    """{"train": [...], "val": [...], "test": [...]} from a Karpathy split file. Raises ValueError
    with a one-line message on a malformed file, missing images, or (with `expect`) the split file of
    another dataset than `expect`."""
    json_path, image_root = Path(json_path), Path(image_root)
    try:
        raw = json.loads(json_path.read_text())
    except OSError as e:
        raise ValueError(f"{json_path}: cannot read the Karpathy split file ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path}: not valid JSON ({e})") from None
    images = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(images, list):
        raise ValueError(f"{json_path}: expected a Karpathy split file, a JSON object with an 'images' list")
    named = raw.get("dataset")
    if expect and named in DATASETS and named != expect:
        raise ValueError(f"{json_path} is the {named} split file; use `python -m train {named}`")
    if not image_root.is_dir():
        raise ValueError(f"{image_root}: --image-root is not a directory")
    splits: dict[str, list[Photo]] = {s: [] for s in SPLITS}
    missing: list[Path] = []
    for i, entry in enumerate(images):
        try:
            filename = entry["filename"]
            split = SPLIT_OF[entry["split"]]
            sentences = entry["sentences"]
            captions = tuple(
                (s.get("raw") or " ".join(s.get("tokens", []))).strip() for s in sentences
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{json_path}: images[{i}] is malformed (missing or bad {e})") from None
        captions = tuple(c for c in captions if c)
        if not captions:
            if split == "train":
                continue  # nothing to learn from; evaluation splits keep the image but need references
            raise ValueError(f"{json_path}: images[{i}] ({filename}) has no caption")
        key = f"{entry['filepath']}/{filename}" if entry.get("filepath") else filename
        path = image_root / key
        if check_files and not path.is_file():
            missing.append(path)
        splits[split].append(Photo(key=key, path=path, captions=captions))
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(images)} images listed in {json_path} are missing, e.g. {missing[0]}; "
            "check --image-root (COCO: the folder that holds train2014/ and val2014/)"
        )
    if not splits["train"]:
        raise ValueError(f"{json_path}: no images in the train split")
    return splits


class CaptionSamples:
    """Every (image, caption) pair of a split, tokenised once: <bos> caption <eos>."""

    def __init__(self, photos: list[Photo], tokenizer, max_caption_tokens: int, seed: int):
        self.photos = photos
        self.seed = seed
        pairs = [(i, c) for i, p in enumerate(photos) for c in range(len(p.captions))]
        self.photo_of = np.array([i for i, _ in pairs], dtype=np.int64)
        texts = [photos[i].captions[c] for i, c in pairs]
        encoded = tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)
        ids = [[tokenizer.bos_id, *e.ids[:max_caption_tokens], tokenizer.eos_id] for e in encoded]
        # one flat array, not 600k Python lists: DataLoader workers share it without copying
        self.lengths = np.array([len(x) for x in ids], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(self.offsets[-1]))
        self.targets = self.lengths - 1  # words + <eos>

    def __len__(self) -> int:
        return len(self.lengths)

    def ids(self, k: int) -> list[int]:
        """<bos> caption <eos> of pair k."""
        return self.flat[self.offsets[k] : self.offsets[k + 1]].tolist()

    @lru_cache(maxsize=2)
    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self))

    def sample(self, position: int) -> int:
        """The pair index at a global sample position."""
        n = len(self)
        return int(self.order(position // n)[position % n])

    def targets_in(self, first: int, count: int) -> int:
        """Number of predicted tokens in the samples at positions first … first + count − 1."""
        return int(sum(self.targets[self.sample(p)] for p in range(first, first + count)))


def load_pixels(path: Path, size: int) -> torch.Tensor:
    """uint8 [3, size, size]: the whole image squashed to the square (as vizcap.images does)."""
    from vizcap.images import open_image

    img = open_image(path).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())


class PixelData(torch.utils.data.Dataset):
    """Image i of a list of photos -> (uint8 pixels, i)."""

    def __init__(self, photos: list[Photo], size: int):
        self.photos, self.size = photos, size

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, i: int):
        return load_pixels(self.photos[i].path, self.size), i


class TrainData(torch.utils.data.Dataset):
    """Global sample position -> (model input, caption ids). The input is the image's uint8 pixels,
    or its cached encoder features when `features` (a FeatureCache over the same photos) is given."""

    def __init__(self, samples: CaptionSamples, size: int, features=None):
        self.samples, self.size, self.features = samples, size, features

    def __len__(self) -> int:
        return 2**62  # indexed by position, which runs over as many epochs as the run needs

    def __getitem__(self, position: int):
        k = self.samples.sample(position)
        i = int(self.samples.photo_of[k])
        x = self.features[i] if self.features is not None else load_pixels(self.samples.photos[i].path, self.size)
        return x, self.samples.ids(k)


def collate(items, pad_id: int):
    inputs, ids = zip(*items)
    longest = max(len(i) for i in ids)
    padded = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        padded[row, : len(seq)] = torch.tensor(seq)
    return torch.stack(inputs), padded
