"""Hugging Face `GitForCausalLM` captioners (e.g. microsoft/git-base, microsoft/git-base-coco): a CLIP
vision transformer whose tokens (class token first, then the patches), projected, are the prefix of a
BERT-like text decoder that reads them through self-attention: a prefix captioner with no
cross-attention. Its decoder steps through transformers' own cache (HFCaptioner.cache_steps).

GitModel.forward only takes pixels, so the decoder is called here on the image tokens vizcap encoded
once (`decode`), the way GitModel.forward composes its parts: the words' embeddings (their positions
count the words only) after the image tokens, the image tokens seeing each other both ways and no
word, each word every image token and the words up to itself."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import hub
from .huggingface import HuggingFaceFamily


@dataclass
class GitDecoderOutput:
    logits: torch.Tensor  # [B, positions, vocabulary]
    cache: object  # transformers' cache (image tokens and words so far), or None


class Git(HuggingFaceFamily):
    model_type = "git"
    label = "Hugging Face GIT"
    summary = "git (GitForCausalLM)"
    example_source = "microsoft/git-base-coco"
    decoder_module_prefixes = ("git.embeddings.", "git.encoder.", "git.visual_projection.", "output.")
    decoder_name = "GIT text decoder"
    mode = "prefix"

    def model_class(self, config, source: str):
        import transformers

        arch = getattr(config, "architectures", None) or []
        if arch and "GitForCausalLM" not in arch:
            raise hub.checkpoint_error(f"{source}: a GIT {arch[0]}, not a GitForCausalLM captioner")
        if getattr(config, "num_image_with_embedding", None):
            raise hub.checkpoint_error(f"{source}: a video GIT ({config.num_image_with_embedding} frames per input); "
                                       "vizcap explains GIT captioners of one image")
        return transformers.GitForCausalLM

    def parts(self, model) -> hub.HFParts:
        config, gc = model.config, model.generation_config

        def setting(name):  # the generation config's, else the model config's (as generate() reads them)
            value = getattr(gc, name, None)
            return value if value is not None else getattr(config, name)

        vision = model.git.image_encoder
        return hub.HFParts(
            vision=vision, decoder=model, vision_config=config.vision_config,
            encoder_attention=[layer.self_attn for layer in hub.vision_layers(vision.vision_model)],
            decoder_self_attention=[layer.attention.self for layer in model.git.encoder.layer],
            decoder_cross_attention=[], decoder_heads=config.num_attention_heads, bos_id=setting("bos_token_id"),
            eos_id=setting("eos_token_id"), pad_id=setting("pad_token_id"), generation_model=model,
            max_positions=config.max_position_embeddings)

    def encoder_name(self, captioner) -> str:
        return "CLIP ViT"

    def encode(self, captioner, pixels: torch.Tensor) -> torch.Tensor:
        git = captioner.model.git
        return git.visual_projection(captioner.vision(pixel_values=pixels).last_hidden_state)

    def decode(self, captioner, ids: torch.Tensor, memory: torch.Tensor, use_cache: bool, **kwargs):
        """[image tokens; ids] through the text decoder, or, with a cache that already holds the image
        tokens and the words so far, ids alone (one new word per row). Nothing is padded, so the
        attention mask HFCaptioner passes (all ones) is not needed."""
        from transformers import DynamicCache

        git = captioner.model.git
        cache = kwargs.get(captioner._cache_kw)
        n_image = memory.shape[1]
        seen = cache.get_seq_length() if cache is not None else 0  # image tokens and words already cached
        first = max(0, seen - n_image)  # the first new word's position among the words
        positions = torch.arange(first, first + ids.shape[1])[None]
        words = git.embeddings(input_ids=ids, position_ids=positions)
        if seen:
            hidden, mask = words, None  # a new word sees every cached key
        else:
            hidden = torch.cat([memory.expand(len(ids), -1, -1), words], dim=1)
            mask = prefix_mask(n_image, hidden.shape[1], hidden.dtype)
        if use_cache and cache is None:
            cache = DynamicCache(config=captioner.model.config)
        out = git.encoder(hidden, attention_mask=mask, use_cache=use_cache,
                          **{captioner._cache_kw: cache} if cache is not None else {})
        return GitDecoderOutput(logits=captioner.model.output(out.last_hidden_state), cache=cache)

    def session(self, captioner, memory: torch.Tensor):
        return captioner.cache_steps(memory)


def prefix_mask(n_image: int, length: int, dtype: torch.dtype) -> torch.Tensor:
    """GIT's additive attention mask over `length` positions whose first `n_image` are the image
    tokens, [1, 1, length, length]: 0 where query q may read key k (an image token reads the image
    tokens; a word the image tokens and the words up to itself), the dtype's minimum elsewhere, as in
    transformers' eager mask."""
    q = torch.arange(length)[:, None]
    k = torch.arange(length)[None, :]
    allowed = (k < n_image) & (q < n_image) | (q >= n_image) & (k <= q)
    return torch.zeros(length, length, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[None, None]
