"""Tiny random Hugging Face captioners, built offline from configs and saved with `save_pretrained`
the way the hub's folders are laid out (config.json, model.safetensors, generation_config.json,
preprocessor_config.json, tokenizer files):

    vit_gpt2(dir)   VisionEncoderDecoderModel: ViT encoder (32 px, 8 px patches -> 4x4 grid + CLS)
                    and a GPT-2 with cross-attention; a byte-level BPE tokenizer trained here;
                    decoder_start = eos = pad = <|endoftext|>, as in nlpconnect/vit-gpt2-image-captioning.
    blip(dir)       BlipForConditionalGeneration: BLIP vision ViT (48 px, 12 px patches -> 4x4 + CLS)
                    and the BERT-like text decoder; a WordPiece tokenizer with [DEC] as bos, [SEP] ends.
    git(dir)        GitForCausalLM: CLIP vision tower (32 px, 8 px patches -> 4x4 + CLS) whose projected
                    tokens are the prefix of the text decoder; a CLIPImageProcessor that resizes the short
                    side and centre-crops (as microsoft/git-base's does); the WordPiece tokenizer with
                    [CLS] as bos, [SEP] ends, as in GIT.

The weights are random but scaled up (initializer_range) so that the next-token distributions are
peaked enough for captions to differ by image and for <eos> to arrive at different steps: beam
search then has real decisions to make. Nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "a an the man woman dog cat bird car bus train red blue green yellow small large two three on in of "
    "with at near sitting standing running grass street table water sky field picture photo group people "
    "next to front top black white brown holding riding playing"
).split()
CORPUS = [
    "a man riding a horse on a field", "a dog sitting on the grass", "two cats on a table",
    "a red bus on the street", "a group of people standing near the water", "a picture of a bird in the sky",
    "a woman holding a white cat", "three small dogs playing in the field", "a black car next to a bus",
    "a photo of a train at the street", "people sitting at a table with water",
]
END_OF_TEXT = "<|endoftext|>"


def _gpt2_tokenizer(directory: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=320, min_frequency=1, special_tokens=[END_OF_TEXT], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                            unk_token=END_OF_TEXT, pad_token=END_OF_TEXT)
    tok.save_pretrained(directory)
    return tok


def _bert_tokenizer(directory: Path, decoder_start: bool = True):
    """A WordPiece tokenizer over WORDS; decoder_start: BLIP's [DEC] appended as bos (GIT starts from [CLS])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing", "."]
    wp = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    wp.decoder = decoders.WordPiece()
    tok = BertTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                            cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True)
    if decoder_start:
        tok.add_special_tokens({"bos_token": "[DEC]"})  # BLIP's decoder start token, appended to the vocabulary
    tok.save_pretrained(directory)
    return tok


def vit_gpt2(directory: Path, seed: int = 0, eos_bias: float = 5.0, image_size: int = 32, patch: int = 8,
             processor: dict | None = None, encoder: str = "vit") -> Path:
    """A VisionEncoderDecoderModel (ViT + GPT-2 with cross-attention) folder; returns it. encoder:
    "vit", "deit" (distilled: class and distillation tokens, 2 extra keys) or "beit" (relative
    position bias)."""
    from transformers import (BeitConfig, BeitModel, DeiTConfig, DeiTModel, GPT2Config, GPT2LMHeadModel, ViTConfig,
                              ViTImageProcessor, ViTModel, VisionEncoderDecoderModel)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = _gpt2_tokenizer(directory)
    eot = tok.convert_tokens_to_ids(END_OF_TEXT)
    torch.manual_seed(seed)
    shape = dict(image_size=image_size, patch_size=patch, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=48, initializer_range=0.3)
    vision = {"vit": lambda: ViTModel(ViTConfig(**shape)),
              "deit": lambda: DeiTModel(DeiTConfig(**shape), add_pooling_layer=False),
              "beit": lambda: BeitModel(BeitConfig(**shape, use_relative_position_bias=True), add_pooling_layer=False)}[encoder]
    dec_cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                         add_cross_attention=True, is_decoder=True, bos_token_id=eot, eos_token_id=eot,
                         pad_token_id=eot, initializer_range=0.15, tie_word_embeddings=False)
    model = VisionEncoderDecoderModel(encoder=vision(), decoder=GPT2LMHeadModel(dec_cfg))
    model.config.decoder_start_token_id = eot
    model.config.pad_token_id = eot
    model.config.eos_token_id = eot
    with torch.no_grad():  # a longer <eos> output row makes endings likelier (lm_head is not tied here)
        model.decoder.lm_head.weight[eot] *= eos_bias
    model.generation_config.decoder_start_token_id = eot
    model.generation_config.pad_token_id = eot
    model.generation_config.eos_token_id = eot
    model.generation_config.max_length = 16
    model.save_pretrained(directory)
    ViTImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                      **(processor or {})).save_pretrained(directory)
    return directory


def blip(directory: Path, seed: int = 0, eos_bias: float = 0.5) -> Path:
    """A BlipForConditionalGeneration folder; returns it."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = _bert_tokenizer(directory)
    dec, sep, pad = tok.bos_token_id, tok.sep_token_id, tok.pad_token_id
    torch.manual_seed(seed)
    config = BlipConfig(
        vision_config=dict(hidden_size=24, image_size=48, patch_size=12, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=48, initializer_range=0.3),
        text_config=dict(vocab_size=len(tok), hidden_size=32, encoder_hidden_size=24, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                         bos_token_id=dec, sep_token_id=sep, pad_token_id=pad, eos_token_id=sep,
                         initializer_range=0.15),
    )
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[sep] += eos_bias
    model.generation_config.max_length = 16
    model.save_pretrained(directory)
    image_processor = BlipImageProcessor(size={"height": 48, "width": 48})
    BlipProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(directory)
    return directory


def git(directory: Path, seed: int = 0, eos_bias: float = 1.0) -> Path:
    """A GitForCausalLM folder with its GitProcessor; returns it."""
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = _bert_tokenizer(directory, decoder_start=False)
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    torch.manual_seed(seed)
    config = GitConfig(
        vision_config=dict(hidden_size=24, image_size=32, patch_size=8, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=48, initializer_range=0.3),
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, bos_token_id=cls, eos_token_id=sep, pad_token_id=pad, initializer_range=0.15,
        tie_word_embeddings=False)
    model = GitForCausalLM(config)
    with torch.no_grad():
        model.output.bias[sep] += eos_bias
    model.generation_config.max_length = 16
    model.save_pretrained(directory)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    GitProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(directory)
    return directory
