"""Memory and time of vizcap on the example Hugging Face captioners' sizes, on this machine's CPU.

    python benchmarks/real_captioners.py [--threads 2] [--tokens 12] [--only git-base,...]

Without the network the real weights cannot be fetched, so each model is rebuilt from its
architecture with random weights of the same shapes and saved as a hub-style folder:

    vit-gpt2   nlpconnect/vit-gpt2-image-captioning: ViT-B/16 at 224 (196 patches + CLS) and GPT-2 small
               with cross-attention, 50,257 tokens
    blip-base  Salesforce/blip-image-captioning-base: BLIP ViT-B/16 at 384 (576 patches + CLS) and the
               12-layer BERT-like text decoder, 30,524 tokens
    git-base   microsoft/git-base (and -coco, the same shapes): CLIP ViT-B/16 at 224 (196 patches + CLS),
               projected, as the prefix of a 6-layer BERT-like text decoder, 30,522 tokens; its
               processor resizes the short side to 224 and centre-crops

Each folder is opened with vizcap.load in a fresh interpreter, which then explains one 640×480
picture (greedy and 4-beam, at most `--tokens` words: random weights almost never end a caption
early, so each is that long), draws its own attention map (cross-attention; GIT: prefix) and rollout,
computes relevancy, and reports wall times and the peak resident memory (VmHWM). Results go to
benchmarks/real_captioners.json (README "Explain a real captioner" quotes them); with --only, the named
models' results replace theirs there and the others' are kept, with the run that made them (each
model's record says the load average of its own run, and a partial run's its command). Other work
on the machine slows every figure, small decoder steps most: with 2 torch threads on 2 busy cores a
768-wide matrix-vector product took 2.5 ms instead of 0.16 ms with 1 thread
(seen while timing git-base beside other work).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "real_captioners.json"

sys.path.insert(0, str(ROOT))
from benchmarks.children import CHILD_PRELUDE  # noqa: E402  (the memory children's shared start: hwm() and the imports)

CHILD = CHILD_PRELUDE + r"""
import time
transformers.logging.set_verbosity_error()
torch.set_num_threads({threads})
import numpy as np
from PIL import Image
out = {{"imports_mb": hwm()}}
import vizcap
from vizcap.maps import available
t = time.perf_counter(); cap = vizcap.load({folder!r}); out["load_s"] = time.perf_counter() - t
own = available(cap.mode)[0]  # the model's own attention map: cross_attention, or prefix (GIT)
out["after_load_mb"] = hwm()
img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
cap.explain(img, max_tokens=2)  # warm-up
for name, kw in (("greedy", {{}}), ("beam4", dict(strategy="beam", beams=4))):
    t = time.perf_counter()
    e = cap.explain(img, max_tokens={tokens}, **kw)
    e.maps(own); e.maps("rollout")
    out[name + "_s"] = time.perf_counter() - t
    out[name + "_tokens"] = len(e.tokens)
out["after_explain_mb"] = hwm()
t = time.perf_counter(); e.maps("relevancy"); out["relevancy_s"] = time.perf_counter() - t
out["peak_mb"] = hwm()
out["params"] = sum(p.numel() for p in cap.model.parameters())
print(json.dumps(out))
"""


def _word_level(vocab: dict[str, int], unk: str):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def build_vit_gpt2(directory: Path, tiny: bool = False) -> Path:
    """nlpconnect/vit-gpt2-image-captioning's shapes with random weights: the same folder the hub benchmark
    (benchmarks/hub.py) uses. tiny: 2 layers 32 wide on 64-px pictures (checks a benchmark's code)."""
    from benchmarks.hub import save_hf_vit_gpt2

    return save_hf_vit_gpt2(directory, tiny=tiny)


def build_blip_base(directory: Path, tiny: bool = False) -> Path:
    """Salesforce/blip-image-captioning-base's shapes with random weights. tiny: the same folder and
    vocabulary around 2 layers 32 wide on 64-px pictures (checks a benchmark's code)."""
    import torch
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials)} | {f"w{i}": i for i in range(len(specials), 30522)}
    vocab |= {"[DEC]": 30522, "[ENC]": 30523}
    tok = BertTokenizerFast(tokenizer_object=_word_level(vocab, "[UNK]"), unk_token="[UNK]", sep_token="[SEP]",
                            pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]", bos_token="[DEC]")
    image, small = 384, {}
    if tiny:
        image, small = 64, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    cfg = BlipConfig(text_config=dict(vocab_size=30524, bos_token_id=30522, sep_token_id=102, pad_token_id=0, **small,
                                      **({"encoder_hidden_size": 32} if tiny else {})),
                     vision_config=dict(image_size=image, patch_size=16, **small))
    torch.manual_seed(0)
    BlipForConditionalGeneration(cfg).save_pretrained(directory)
    processor = BlipImageProcessor(size={"height": image, "width": image})
    BlipProcessor(image_processor=processor, tokenizer=tok).save_pretrained(directory)
    return directory


def build_git_base(directory: Path) -> Path:
    """microsoft/git-base's shapes (GitConfig's defaults are git-base's) with random weights, its CLIP
    processor (short side to 224, centre crop 224) and a word-level stand-in of its BERT vocabulary with
    the special tokens at BERT's ids ([CLS] 101 starts a caption, [SEP] 102 ends it)."""
    import torch
    from transformers import BertTokenizerFast, CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    specials = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    vocab = {f"w{i}": i for i in range(30522) if i not in specials.values()} | specials
    tok = BertTokenizerFast(tokenizer_object=_word_level(vocab, "[UNK]"), unk_token="[UNK]", sep_token="[SEP]",
                            pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    cfg = GitConfig(vision_config=dict(image_size=224, patch_size=16), vocab_size=30522, bos_token_id=101,
                    eos_token_id=102, pad_token_id=0)
    torch.manual_seed(0)
    GitForCausalLM(cfg).save_pretrained(directory)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    GitProcessor(image_processor=processor, tokenizer=tok).save_pretrained(directory)
    return directory


BUILDERS = {"vit-gpt2": build_vit_gpt2, "blip-base": build_blip_base, "git-base": build_git_base}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--only", default=",".join(BUILDERS), metavar="NAMES",
                        help=f"some of {', '.join(BUILDERS)} (the others' results in {OUT.name} are kept)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if not names or set(names) - set(BUILDERS):
        parser.error(f"--only takes some of {', '.join(BUILDERS)}")
    import transformers

    transformers.logging.set_verbosity_error()
    command = "python benchmarks/real_captioners.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}"
    partial = set(names) != set(BUILDERS) and OUT.exists()
    if partial:  # the other models' figures and the run that made them stay; the new ones say their own run
        results = json.loads(OUT.read_text())
    else:
        results = {"command": command, "machine": machine, "load_average_start": list(os.getloadavg()), "models": {}}
    with tempfile.TemporaryDirectory(prefix="vizcap-real-") as tmp:
        for name in names:
            start = list(os.getloadavg())
            folder = BUILDERS[name](Path(tmp) / name)
            child = CHILD.format(root=str(ROOT), folder=str(folder), threads=args.threads, tokens=args.tokens)
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"}
            r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=3600)
            if r.returncode != 0:
                print(r.stderr[-2000:], file=sys.stderr)
                return 1
            results["models"][name] = json.loads(r.stdout.strip().splitlines()[-1])
            results["models"][name]["load_average"] = [start, list(os.getloadavg())]  # other work slows every figure
            if partial:
                results["models"][name].update(command=command, machine=machine)
            print(name, results["models"][name], flush=True)
    if not partial:
        results["load_average_end"] = list(os.getloadavg())  # other work on the machine slows every figure
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
