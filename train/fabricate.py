"""A tiny photo-captioning world on disk, made without the network, for the tests and the benchmarks
of `python -m train coco`:

    root/
      images/train2014/*.jpg, images/val2014/*.jpg   ShapeScenes pictures, COCO-style folders
      dataset_coco.json                              a Karpathy split file (train/restval/val/test)
      gpt2/                                          a tiny random GPT-2 (save_pretrained) and a
                                                     ByteLevel BPE tokenizer.json trained on the captions
      test_vit.safetensors, test_resnet.safetensors  timm weights files for --encoder-weights FILE
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

SPLITS = ["train"] * 7 + ["restval"] + ["val"] * 2 + ["test"] * 2  # a dozen images
END_OF_TEXT = "<|endoftext|>"


@dataclass
class Fabricated:
    root: Path
    karpathy_json: Path
    image_root: Path
    decoder: Path
    encoder_files: dict[str, Path]
    images: list[Path]


def _captions(caption: str, k: int) -> list[str]:
    variants = [f"A picture of {caption}.", f"{caption[0].upper()}{caption[1:]}", f"there is {caption} here"]
    return variants[: 2 + k % 2]  # two or three captions per image


def fabricate(root: Path, seed: int = 0) -> Fabricated:
    from safetensors.torch import save_file
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    import timm
    from vizcap.scenes import render_scene

    root.mkdir(parents=True, exist_ok=True)
    image_root = root / "images"
    entries, texts, images = [], [], []
    for k, split in enumerate(SPLITS):
        scene = render_scene(1000 + k)
        folder = "val2014" if split in ("val", "test", "restval") else "train2014"
        filename = f"COCO_{folder}_{k:012d}.jpg"
        path = image_root / folder / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        scene.image.convert("RGB").save(path, quality=90)
        images.append(path)
        captions = _captions(scene.caption, k)
        texts += captions
        entries.append({
            "filepath": folder, "filename": filename, "imgid": k, "cocoid": 1000 + k, "split": split,
            "sentids": list(range(10 * k, 10 * k + len(captions))),
            "sentences": [{"raw": c, "tokens": c.lower().strip(".").split(), "imgid": k, "sentid": 10 * k + i}
                          for i, c in enumerate(captions)],
        })
    karpathy_json = root / "dataset_coco.json"
    karpathy_json.write_text(json.dumps({"dataset": "coco", "images": entries}))

    decoder = root / "gpt2"
    decoder.mkdir(exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=320, min_frequency=1, special_tokens=[END_OF_TEXT], show_progress=False)
    bpe.save(str(decoder / "tokenizer.json"))
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=bpe.token_to_id(END_OF_TEXT), eos_token_id=bpe.token_to_id(END_OF_TEXT))
    GPT2LMHeadModel(config).save_pretrained(decoder)  # dropout 0.1 as in the real GPT-2

    encoder_files = {}
    for name in ("test_vit", "test_resnet"):
        torch.manual_seed(seed)
        model = timm.create_model(name)
        encoder_files[name] = root / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(encoder_files[name]))
    return Fabricated(root, karpathy_json, image_root, decoder, encoder_files, images)
