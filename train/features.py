"""A cache of a frozen encoder's patch features, so that later epochs cost only mapper and decoder.

    DIR/<split>/key.json                  what the features were made with (encoder, weights, images…)
    DIR/<split>/shard-00000.safetensors   "features" [n, N, C] for images 0 … n−1 of the split
    DIR/<split>/shard-00001.safetensors   …
    DIR/<split>/meta.json                 written last: the cache is complete

One pass over the split's images writes the shards (each atomically, so an interrupted pass resumes
at the first missing shard; under torchrun each rank writes every world-th shard). Rows are read
lazily through safetensors' memory-mapped slices. A cache made with another encoder, other weights,
image size or image list is refused rather than silently reused.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from vizcap.files import atomic_write, write_json

VERSION = 1
OPEN_SHARDS = 32  # per process: bounded, so that thousands of shards never exhaust file descriptors
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(encoder: dict, weights: str, image_keys: list[str], dtype: str, shard_size: int) -> dict:
    """What makes cached features valid, as JSON data (tuples become lists, as in key.json)."""
    return json.loads(json.dumps({
        "version": VERSION,
        "encoder": encoder,  # name, kwargs, feature_index, image_size, mean, std
        "weights": weights,
        "images": len(image_keys),
        "images_sha256": hashlib.sha256("\n".join(image_keys).encode()).hexdigest(),
        "dtype": dtype,
        "shard_size": shard_size,
    }))


class FeatureCache:
    """Read access: cache[i] -> float32 features [N, C] of image i."""

    def __init__(self, directory: Path):
        self.directory = directory
        meta = json.loads((directory / "meta.json").read_text())
        self.n, self.shard_size, self.shape = meta["images"], meta["shard_size"], tuple(meta["shape"])
        self._open: OrderedDict[int, object] = OrderedDict()  # the most recently used shards, kept open

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        s, j = divmod(int(i), self.shard_size)
        if s in self._open:
            self._open.move_to_end(s)
        else:  # opened lazily, so that every DataLoader worker has its own handles
            self._open[s] = safe_open(str(shard_path(self.directory, s)), framework="pt")
            if len(self._open) > OPEN_SHARDS:
                self._open.popitem(last=False)
        return self._open[s].get_slice("features")[j : j + 1][0].float()

    def __getstate__(self):
        return {**self.__dict__, "_open": OrderedDict()}


def shard_path(directory: Path, s: int) -> Path:
    return directory / f"shard-{s:05d}.safetensors"


def build(
    directory: Path,
    key: dict,
    n_images: int,
    encode: Callable[[list[int]], torch.Tensor],
    batches: Callable[[list[int]], object],
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    desc: str = "cache",
) -> FeatureCache:
    """Fill `directory` with the features of images 0 … n_images−1 (if it is not already complete)
    and return a reader. `batches(indices)` yields (pixels, indices) batches of those images;
    `encode(pixels)` returns their features [b, N, C]."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, meta_path = directory / "key.json", directory / "meta.json"
    dtype = DTYPES[key["dtype"]]
    if key_path.exists():
        old = json.loads(key_path.read_text())
        if old != key:
            differs = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            raise ValueError(
                f"{directory}: feature cache made for other settings ({', '.join(differs)} differ); "
                "pass another --cache-features directory or delete this one"
            )
    barrier()  # every rank has read key.json before rank 0 may write it
    if rank == 0 and not key_path.exists():
        write_json(key_path, key)
    if not meta_path.exists():
        size = key["shard_size"]
        n_shards = (n_images + size - 1) // size
        todo = [s for s in range(rank, n_shards, world) if not shard_path(directory, s).exists()]
        shape = None
        bar = tqdm(total=len(todo), desc=desc, unit="shard", disable=rank != 0 or not todo, dynamic_ncols=True)
        for s in todo:
            indices = list(range(s * size, min((s + 1) * size, n_images)))
            parts = [encode(pixels).to("cpu", dtype) for pixels, _ in batches(indices)]
            features = torch.cat(parts).contiguous()
            shape = features.shape[1:]
            atomic_write(shard_path(directory, s), lambda p: save_file({"features": features}, p))
            bar.update(1)
        bar.close()
        barrier()  # all shards written
        if rank == 0:
            if shape is None:
                with safe_open(str(shard_path(directory, 0)), framework="pt") as f:
                    shape = f.get_slice("features").get_shape()[1:]
            meta = {**key, "shape": list(shape), "shards": n_shards}
            write_json(meta_path, meta)
        barrier()
    return FeatureCache(directory)
