"""Hugging Face `BlipForConditionalGeneration` captioners (e.g. Salesforce/blip-image-captioning-base):
the BLIP vision ViT and its BERT-like text decoder with cross-attention, which steps through
transformers' own cache (HFCaptioner.cache_steps)."""

from __future__ import annotations

import torch

from .. import hub
from .huggingface import HuggingFaceFamily


class Blip(HuggingFaceFamily):
    model_type = "blip"
    label = "Hugging Face BLIP"
    summary = "blip"
    example_source = "Salesforce/blip-image-captioning-base"
    decoder_module_prefixes = ("text_decoder.",)
    decoder_name = "BLIP text decoder"

    def model_class(self, config, source: str):
        import transformers

        arch = getattr(config, "architectures", None) or []
        if arch and "BlipForConditionalGeneration" not in arch:
            raise hub.checkpoint_error(f"{source}: a BLIP {arch[0]}, not a BlipForConditionalGeneration captioner")
        return transformers.BlipForConditionalGeneration

    def parts(self, model) -> hub.HFParts:
        text = model.config.text_config
        blocks = list(model.text_decoder.bert.encoder.layer)
        return hub.HFParts(
            vision=model.vision_model, decoder=model.text_decoder, vision_config=model.config.vision_config,
            encoder_attention=[layer.self_attn for layer in hub.vision_layers(model.vision_model)],
            decoder_self_attention=[b.attention.self for b in blocks],
            decoder_cross_attention=[b.crossattention.self for b in blocks],
            decoder_heads=text.num_attention_heads, bos_id=text.bos_token_id, eos_id=text.sep_token_id,
            pad_id=text.pad_token_id, generation_model=model.text_decoder, max_positions=text.max_position_embeddings,
            # BlipTextSelfAttention: softmax(QKᵀ/√d + mask), keys and values Linear maps of the memory
            cross_projections=[(c.query, c.key, c.value) for c in (b.crossattention.self for b in blocks)])

    def encoder_name(self, captioner) -> str:
        return "BLIP ViT"

    def encode(self, captioner, pixels: torch.Tensor) -> torch.Tensor:
        return captioner.vision(pixel_values=pixels)[0]

    def decode(self, captioner, ids: torch.Tensor, memory: torch.Tensor, use_cache: bool, **kwargs):
        mask = torch.ones(memory.shape[:2], dtype=torch.long)
        return captioner.decoder(input_ids=ids, encoder_hidden_states=memory, encoder_attention_mask=mask,
                                 use_cache=use_cache, **kwargs)

    def session(self, captioner, memory: torch.Tensor):
        return captioner.cache_steps(memory)
