"""One teacher-forced pass through the captioner, taken apart for teaching: the live shape of every
tensor, what each decoder position reads and what it is trained to predict (`model.labels`, with
-100 on the prefix), and what the auxiliary dense heads see.

    info = trace(captioner, image, "a red circle")
    info["shapes"]["memory"]     # [1, N, d]
    info["positions"][0]         # {'position': 0, 'input': 'prefix 0', 'label': -100, ...}
"""

from __future__ import annotations

import numpy as np
import torch

from .model import IGNORE, caption_loss
from .scenes import COLOURS, RELATIONS, SHAPES

# The auxiliary heads of the ShapeScenes preset (train/shapes.py): class 0 is the background.
AUX_CLASS_NAMES = {"shape": ["background", *SHAPES], "colour": ["background", *COLOURS],
                   "order": ["background", "1st place", "2nd place", "3rd place"],
                   "relation": ["background or no relation", *(f"{r} the other" for r in RELATIONS)]}


@torch.inference_mode()
def trace(captioner, image, caption: str) -> dict:
    """Read `caption` (the truth, or any text in the model's vocabulary) with teacher forcing."""
    model, cfg, tok = captioner.model, captioner.cfg, captioner.tokenizer
    pixels = captioner.pixels([image])
    words = tok.encode(caption)
    room = cfg.max_positions - cfg.n_prefix - 2
    words = words[:room]
    input_ids = torch.tensor([[cfg.bos_id, *words, cfg.eos_id]], dtype=torch.long)
    features = model.encoder(pixels)
    memory = model.encode(pixels)
    prefix, mapper_attention = model.prefix(memory)
    logits = model.decode(memory, prefix, input_ids, use_cache=False).logits
    labels = model.labels(input_ids)
    loss = float(caption_loss(logits, labels))
    P = cfg.n_prefix
    probs = torch.softmax(logits[0].float(), -1)
    positions = []
    for i in range(logits.shape[1]):
        if i < P:
            given = f"prefix {i}"
        else:
            given = tok.token_text(int(input_ids[0, i - P]))
        label = int(labels[0, i])
        top = int(probs[i].argmax())
        positions.append({
            "position": i,
            "input": given,
            "label": label,
            "target": "— (ignored)" if label == IGNORE else tok.token_text(label),
            "predicted": tok.token_text(top),
            "p_target": None if label == IGNORE else round(float(probs[i, label]), 4),
        })
    aux = {}
    for name, head_logits in model.aux_logits(memory).items():
        classes = head_logits[0].argmax(-1).reshape(captioner.grid).numpy().astype(np.int64)
        names = AUX_CLASS_NAMES.get(name)
        if names is None or len(names) != head_logits.shape[-1]:
            names = [f"class {k}" for k in range(head_logits.shape[-1])]
        aux[name] = {"classes": classes, "names": names}
    shapes = {
        "encoder": cfg.encoder,
        "pixels": list(pixels.shape),
        "features": list(features.shape),
        "grid": list(captioner.grid),
        "memory": list(memory.shape),
        "prefix": list(prefix.shape) if prefix is not None else [1, 0, cfg.d_model],
        "mapper_attention": list(mapper_attention.shape) if mapper_attention is not None else [],
        "input_ids": list(input_ids.shape),
        "decoder_input": [1, P + input_ids.shape[1], cfg.d_model],
        "logits": list(logits.shape),
        "decoder_layers": cfg.decoder_layers,
        "decoder_heads": cfg.decoder_heads,
        "mode": cfg.mode,
    }
    return {"caption": tok.decode(words), "shapes": shapes, "positions": positions, "loss": loss, "aux": aux,
            "n_prefix": P}
