"""Hugging Face `VisionEncoderDecoderModel` captioners: a ViT, DeiT or BEiT patch encoder and a GPT-2
with cross-attention (e.g. nlpconnect/vit-gpt2-image-captioning). The GPT-2 decoder steps through
vizcap's own cached decoder steps (vizcap.decoding.step_function), like vizcap's models."""

from __future__ import annotations

import torch

from .. import hub
from ..decoding import step_function
from .huggingface import HuggingFaceFamily

PATCH_ENCODERS = ("vit", "deit", "beit")  # encoders with a plain patch grid vizcap can map


class VisionEncoderDecoder(HuggingFaceFamily):
    model_type = "vision-encoder-decoder"
    label = "Hugging Face ViT+GPT-2"
    summary = "vision-encoder-decoder (ViT/DeiT/BEiT + GPT-2)"
    example_source = "nlpconnect/vit-gpt2-image-captioning"
    decoder_module_prefixes = ("decoder.",)
    decoder_name = "GPT-2"

    def model_class(self, config, source: str):
        import transformers

        enc, dec = config.encoder.model_type, config.decoder.model_type
        if enc not in PATCH_ENCODERS:
            raise hub.checkpoint_error(f"{source}: encoder {enc!r} has no plain patch grid vizcap can map (supported: {', '.join(PATCH_ENCODERS)})")
        if dec != "gpt2" or not getattr(config.decoder, "add_cross_attention", False):
            raise hub.checkpoint_error(f"{source}: decoder {dec!r} is not a GPT-2 with cross-attention")
        return transformers.VisionEncoderDecoderModel

    def parts(self, model) -> hub.HFParts:
        config, dec = model.config, model.decoder.config
        bos = config.decoder_start_token_id
        if bos is None:
            bos = model.generation_config.decoder_start_token_id
        gc = model.generation_config
        eos = gc.eos_token_id if gc.eos_token_id is not None else dec.eos_token_id
        pad = gc.pad_token_id if gc.pad_token_id is not None else config.pad_token_id
        blocks = list(model.decoder.transformer.h)
        return hub.HFParts(
            vision=model.encoder, decoder=model.decoder, vision_config=model.encoder.config,
            encoder_attention=[_vit_attention(layer) for layer in hub.vision_layers(model.encoder)],
            decoder_self_attention=[b.attn for b in blocks], decoder_cross_attention=[b.crossattention for b in blocks],
            decoder_heads=dec.n_head, bos_id=bos, eos_id=eos,
            pad_id=pad if pad is not None else (eos[0] if isinstance(eos, list) else eos),
            generation_model=model, max_positions=dec.n_positions)

    def encoder_name(self, captioner) -> str:
        kind = captioner.vision.config.model_type
        return {"vit": "ViT", "deit": "DeiT", "beit": "BEiT"}.get(kind, kind)

    def encode(self, captioner, pixels: torch.Tensor) -> torch.Tensor:
        memory = captioner.vision(pixel_values=pixels).last_hidden_state
        return captioner.model.enc_to_dec_proj(memory) if _projects(captioner.model) else memory

    def decode(self, captioner, ids: torch.Tensor, memory: torch.Tensor, use_cache: bool, **kwargs):
        return captioner.decoder(input_ids=ids, encoder_hidden_states=memory, use_cache=use_cache, **kwargs)

    def session(self, captioner, memory: torch.Tensor):
        """The same one-token steps as vizcap's own models (vizcap.decoding.step_function): CachedSteps
        when it is bitwise the decoder's step (eager attention, eval mode, only vizcap's hooks), else
        transformers' own cache."""
        start = captioner.decoder.transformer.wte(torch.full((1, 1), captioner.bos_id, dtype=torch.long))
        return step_function(captioner.decoder, start, memory)


def _projects(model) -> bool:
    """The encoder's width differs from GPT-2's and the decoder does not read it as it is: the model's
    enc_to_dec_proj maps one to the other (as VisionEncoderDecoderModel.forward does)."""
    return (model.encoder.config.hidden_size != model.decoder.config.hidden_size
            and getattr(model.decoder.config, "cross_attention_hidden_size", None) is None)


def _vit_attention(layer):
    """The module of a ViT/DeiT/BEiT layer whose output[1] is the attention weights."""
    attn = layer.attention
    inner = getattr(attn, "attention", None)  # older transformers: ViTAttention wraps ViTSelfAttention
    return inner if isinstance(inner, torch.nn.Module) else attn
