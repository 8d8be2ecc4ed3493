"""The vizcap captioner, top to bottom.

    image ──► encoder (any timm model) ──► patch tokens [B, N, C]      (N = gh·gw grid cells)
                                              │ project to d, + position, LayerNorm
                                              ▼
                                        memory [B, N, d] ─────────────────────────┐
                                              │                                   │ cross-attention
                                              ▼                                   │ (modes "cross", "both")
                 mapper: n_prefix learned queries attend over the memory          │
                         (each prefix token has its own map over patches)         │
                                              ▼                                   ▼
                                        prefix [B, P, d] ──► GPT-2 decoder ◄── memory
                                                              ▲
                                  <bos> w1 w2 … (word embeddings)
                                                              ▼
                                                  next-word logits [B, T, V]

Three modes: "prefix" (GPT-2 sees the image only through the prefix tokens, like ClipCap),
"cross" (only through cross-attention to the memory; no prefix) and "both" (the default).

Optional auxiliary heads read the memory and predict, per grid cell, a label such as the shape or
the colour of the object under it. On ShapeScenes this dense supervision stands in for a pretrained
encoder (see the "How it works" page); they play no part in captioning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from . import vit as _vit  # noqa: F401  (registers vizcap_vit_convstem in timm's model registry)

MODES = ("prefix", "cross", "both")
IGNORE = -100  # label of positions that the loss ignores (the prefix, padding)


@dataclass
class CaptionerConfig:
    # vision encoder, created with timm.create_model(encoder, **encoder_kwargs)
    encoder: str = "mobilenetv3_small_100"
    encoder_kwargs: dict = field(default_factory=dict)
    feature_index: int | None = 3  # CNNs: which feature stage to read (timm features_only); None: forward_features
    image_size: int = 128  # the whole image is resized (never cropped) to image_size × image_size
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # shared width of memory, prefix and decoder
    d_model: int = 128
    # mapper
    n_prefix: int = 6
    mapper_heads: int = 4
    mapper_layers: int = 0  # a small transformer over the prefix tokens after resampling
    # decoder (a transformers GPT-2)
    decoder_layers: int = 2
    decoder_heads: int = 4
    max_positions: int = 64  # prefix + caption tokens
    vocab_size: int = 64
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = 0
    mode: str = "both"  # "prefix" | "cross" | "both"
    # auxiliary dense heads: name -> number of classes (0 = background)
    aux_heads: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "cross":
            self.n_prefix = 0
        elif self.n_prefix < 1:
            raise ValueError(f"mode {self.mode!r} needs n_prefix >= 1")
        if self.d_model % self.mapper_heads or self.d_model % self.decoder_heads:
            raise ValueError("d_model must be divisible by mapper_heads and decoder_heads")
        self.image_mean = tuple(self.image_mean)
        self.image_std = tuple(self.image_std)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CaptionerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**d)


# ------------------------------------------------------------------------------------------------
# Encoder


class Encoder(nn.Module):
    """A timm model read as a grid of feature vectors: [B, 3, S, S] -> [B, gh·gw, C], (gh, gw).

    ViT-like models: `forward_features`, minus the class/register tokens, on `patch_embed.grid_size`.
    CNNs: one stage of `features_only`, flattened row by row."""

    def __init__(self, cfg: CaptionerConfig, pretrained: bool = False):
        super().__init__()
        kwargs = dict(cfg.encoder_kwargs)
        if cfg.feature_index is not None:
            kwargs.update(features_only=True, out_indices=(cfg.feature_index,))
        else:
            kwargs.setdefault("num_classes", 0)
        self.model = timm.create_model(cfg.encoder, pretrained=pretrained, **kwargs)
        self.features_only = cfg.feature_index is not None
        self.num_prefix_tokens = getattr(self.model, "num_prefix_tokens", 0)
        with torch.no_grad():  # one dummy pass tells the width and the grid of any encoder
            was_training = self.model.training
            self.model.eval()
            probe = self._features(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
            self.model.train(was_training)
        self.channels = probe.shape[1]
        self.grid = (probe.shape[2], probe.shape[3])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, gh, gw] feature map."""
        if self.features_only:
            return self.model(x)[-1]
        f = self.model.forward_features(x)
        if f.dim() == 4:  # CNN trunk: already [B, C, H, W] (or NHWC for some; timm returns NCHW)
            return f
        f = f[:, self.num_prefix_tokens :]  # drop class / register tokens
        gh, gw = self.model.patch_embed.grid_size if hasattr(self.model, "patch_embed") else _square(f.shape[1])
        return f.transpose(1, 2).reshape(f.shape[0], f.shape[2], gh, gw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x).flatten(2).transpose(1, 2)  # B, N, C (row-major over the grid)


def _square(n: int) -> tuple[int, int]:
    side = int(math.isqrt(n))
    if side * side != n:
        raise ValueError(f"cannot infer a square grid from {n} tokens")
    return side, side


# ------------------------------------------------------------------------------------------------
# Mapper: learned-query attention resampler


class Attention(nn.Module):
    """Multi-head attention written out, so that its weights are always real numbers we can show."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, d = x.shape
        N, h = context.shape[1], self.n_heads
        q = self.q(x).view(B, T, h, d // h).transpose(1, 2)  # B, h, T, hs
        k, v = self.kv(context).view(B, N, 2, h, d // h).permute(2, 0, 3, 1, 4)  # each B, h, N, hs
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)  # B, h, T, N
        y = (weights @ v).transpose(1, 2).reshape(B, T, d)
        return self.out(y), weights


class MLP(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class PrefixBlock(nn.Module):
    """Pre-norm transformer block over the prefix tokens (self-attention + MLP)."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(d), Attention(d, n_heads), nn.LayerNorm(d), MLP(d)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.ln_1(x)
        a, weights = self.attn(h, h)
        x = x + a
        return x + self.mlp(self.ln_2(x)), weights


class Mapper(nn.Module):
    """n_prefix learned queries attend over the memory; each becomes one prefix embedding.

    Returns the prefix [B, P, d] and the resampler's attention [B, heads, P, N]: prefix token p's
    own map over the patches."""

    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        d = cfg.d_model
        self.queries = nn.Parameter(torch.randn(cfg.n_prefix, d) * 0.02)
        self.ln_q, self.ln_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, cfg.mapper_heads)
        self.ln_mlp, self.mlp = nn.LayerNorm(d), MLP(d)
        self.blocks = nn.ModuleList(PrefixBlock(d, cfg.mapper_heads) for _ in range(cfg.mapper_layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        q = self.queries.expand(memory.shape[0], -1, -1)
        a, weights = self.attn(self.ln_q(q), self.ln_kv(memory))
        x = q + a
        x = x + self.mlp(self.ln_mlp(x))
        block_weights = []
        for block in self.blocks:
            x, w = block(x)
            block_weights.append(w)
        return self.ln_f(x), weights, block_weights


# ------------------------------------------------------------------------------------------------
# The captioner


class CaptionModel(nn.Module):
    def __init__(self, cfg: CaptionerConfig, pretrained_encoder: bool = False, decoder: GPT2LMHeadModel | None = None):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoder = Encoder(cfg, pretrained=pretrained_encoder)
        self.grid = self.encoder.grid
        n_patches = self.grid[0] * self.grid[1]
        # patch tokens -> memory: projection to the decoder's width, learned 2-D position, norm
        self.project = nn.Linear(self.encoder.channels, d)
        self.pos = nn.Parameter(torch.randn(1, n_patches, d) * 0.02)
        self.ln_memory = nn.LayerNorm(d)
        self.mapper = Mapper(cfg) if cfg.mode != "cross" else None
        if decoder is None:
            gpt2 = GPT2Config(
                vocab_size=cfg.vocab_size,
                n_positions=cfg.max_positions,
                n_embd=d,
                n_layer=cfg.decoder_layers,
                n_head=cfg.decoder_heads,
                add_cross_attention=cfg.mode != "prefix",
                resid_pdrop=0.0,  # GPT2Config's dropouts default to 0.1; the small model needs none
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                bos_token_id=cfg.bos_id,
                eos_token_id=cfg.eos_id,
                pad_token_id=cfg.pad_id,
            )
            # eager attention computes real weights (SDPA returns none); see README "Attention weights"
            gpt2._attn_implementation = "eager"
            decoder = GPT2LMHeadModel(gpt2)
        self.decoder = decoder
        self.aux = nn.ModuleDict({name: nn.Linear(d, n) for name, n in cfg.aux_heads.items()})

    # -- the three stages ------------------------------------------------------------------------

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, S, S] -> memory [B, N, d]."""
        return self.memory_from_features(self.encoder(pixels))

    def memory_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features [B, N, C] -> memory [B, N, d] (training from cached features starts here)."""
        return self.ln_memory(self.project(features) + self.pos)

    def prefix(self, memory: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Memory -> prefix [B, P, d] and the mapper's attention [B, heads, P, N] (None in mode "cross")."""
        if self.mapper is None:
            return None, None
        prefix, weights, _ = self.mapper(memory)
        return prefix, weights

    def decode(self, memory: torch.Tensor, prefix: torch.Tensor | None, input_ids: torch.Tensor, **kwargs):
        """One decoder pass over [prefix; embed(input_ids)]; returns the transformers output."""
        embeds = self.decoder.transformer.wte(input_ids)
        if prefix is not None:
            embeds = torch.cat([prefix, embeds], dim=1)
        cross = memory if self.cfg.mode != "prefix" else None
        return self.decoder(inputs_embeds=embeds, encoder_hidden_states=cross, **kwargs)

    # -- training --------------------------------------------------------------------------------

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, attentions: bool = False,
                hidden: bool = False) -> dict[str, torch.Tensor]:
        """Teacher forcing. input_ids = <bos> w1 … wn <eos> <pad>…; returns logits at every
        position (prefix included), the labels aligned with them, the memory and the mapper's
        attention [B, heads, P, N] (None in mode "cross"; a training loss may shape it).
        With attentions=True also the decoder's self-attention [L, B, heads, S, S] and
        cross-attention [L, B, heads, S, N] (S = P + T; None where the mode has none); with
        hidden=True the decoder's last hidden states [B, S, d] (what the language-model head reads)."""
        memory = self.encode(pixels)
        prefix, mapper_attention = self.prefix(memory)
        out = self.decode(memory, prefix, input_ids, use_cache=False, output_attentions=attentions,
                          output_hidden_states=hidden)
        result = {"logits": out.logits, "labels": self.labels(input_ids), "memory": memory,
                  "mapper_attention": mapper_attention}
        if hidden:
            result["hidden"] = out.hidden_states[-1]
        if attentions:
            result["self_attention"] = torch.stack(out.attentions)
            result["cross_attention"] = torch.stack(out.cross_attentions) if out.cross_attentions else None
        return result

    def labels(self, input_ids: torch.Tensor) -> torch.Tensor:
        """What each position should predict: the next caption token; IGNORE on the prefix (it has
        nothing to predict), on the last prefix slot (<bos> is given, not predicted) and on padding."""
        B = input_ids.shape[0]
        P = self.cfg.n_prefix
        nxt = input_ids[:, 1:].masked_fill(input_ids[:, 1:] == self.cfg.pad_id, IGNORE)
        if self.cfg.pad_id == self.cfg.eos_id:  # GPT-2 BPE: keep the first eos as a target
            first_eos = (input_ids[:, 1:] == self.cfg.eos_id).int().cumsum(1) == 1
            nxt = torch.where(first_eos & (input_ids[:, 1:] == self.cfg.eos_id), input_ids[:, 1:], nxt)
        ignore = torch.full((B, P), IGNORE, dtype=input_ids.dtype, device=input_ids.device)
        last = torch.full((B, 1), IGNORE, dtype=input_ids.dtype, device=input_ids.device)
        return torch.cat([ignore, nxt, last], dim=1)

    def aux_logits(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(memory) for name, head in self.aux.items()}


def caption_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not IGNORE."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)
