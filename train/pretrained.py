"""The pretrained parts of a photo captioner, from Hugging Face hub names or local folders: the hub
reached without hanging (offline: the local cache only, and a one-line error naming what to pass), the
GPT-2 decoder and its BPE tokenizer, the timm encoder's settings and weights, and `build_model`, which
puts them together into a CaptionModel for train/photos.py."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import torch

from vizcap.model import CaptionerConfig, CaptionModel
from vizcap.tokenizer import CaptionTokenizer

from . import features as feature_cache

END_OF_TEXT = "<|endoftext|>"


# ------------------------------------------------------------------------------------------------
# The hub, without hanging


_ONLINE: bool | None = None


def hub_online() -> bool:
    """Can the Hugging Face hub be reached? False under HF_HUB_OFFLINE=1; otherwise one TCP connect
    with a 3-second limit (to the proxy if one is set), asked once per process."""
    global _ONLINE
    if _ONLINE is None:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            _ONLINE = False
        else:
            from huggingface_hub import constants

            url = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or constants.ENDPOINT
            parsed = urlparse(url if "://" in url else f"http://{url}")
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                socket.create_connection((parsed.hostname, port), timeout=3).close()
                _ONLINE = True
            except OSError:
                _ONLINE = False
    return _ONLINE


class HubUnavailable(ValueError):
    pass


def hub_file(repo: str, filename: str) -> str:
    """Local path of a hub file: the cache first, the network only if the hub is reachable."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, local_files_only=True)
    except Exception:
        pass
    if not hub_online():
        raise HubUnavailable(f"{repo}/{filename}")
    return hf_hub_download(repo, filename)


# ------------------------------------------------------------------------------------------------
# Decoder: GPT-2 and its BPE tokenizer

_REBUILT_DEFAULTS = {  # what CaptionModel's own GPT2Config assumes; a decoder must agree to reload
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "tie_word_embeddings": True,
}


def decoder_dir(spec: str) -> tuple[Path, str]:
    """A local directory holding the decoder (config, weights, tokenizer) and its description."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"--decoder {spec}: no config.json in this directory (save it with save_pretrained)")
        return path, str(path.resolve())
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ValueError(f"--decoder {spec}: not a directory")
    try:
        config = hub_file(spec, "config.json")
        hub_file(spec, "tokenizer.json")
        hub_file(spec, "model.safetensors")  # safetensors only: weights never run code when loaded
    except HubUnavailable:
        raise HubUnavailable(
            f"cannot fetch GPT-2 {spec!r} from the Hugging Face hub (offline, and not in the local cache): "
            "pass --decoder DIR, a directory saved with save_pretrained that holds config.json, "
            "model.safetensors and tokenizer.json"
        ) from None
    except Exception as e:
        raise ValueError(f"--decoder {spec}: cannot fetch it from the hub ({str(e).splitlines()[0]})") from None
    return Path(config).parent, spec


def load_tokenizer(directory: Path) -> CaptionTokenizer:
    """The decoder's GPT-2 BPE tokenizer: tokenizer.json, or vocab.json + merges.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    try:
        if (directory / "tokenizer.json").is_file():
            tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            tok = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            tok.add_special_tokens([END_OF_TEXT])
        else:
            raise ValueError("no tokenizer.json (nor vocab.json + merges.txt)")
        if tok.token_to_id(END_OF_TEXT) is None:
            raise ValueError(f"no {END_OF_TEXT} token (a GPT-2 BPE tokenizer is expected)")
        return CaptionTokenizer(tok, pad=END_OF_TEXT, bos=END_OF_TEXT, eos=END_OF_TEXT)
    except Exception as e:
        raise ValueError(f"--decoder {directory}: tokenizer: {str(e).splitlines()[0]}") from None


def load_decoder(directory: Path, mode: str, dropout: float | None):
    """GPT2LMHeadModel with cross-attention layers added (newly initialised) unless mode is "prefix"."""
    import transformers
    from transformers import GPT2LMHeadModel

    kwargs = {"add_cross_attention": mode != "prefix", "attn_implementation": "eager", "dtype": torch.float32,
              "use_safetensors": True}
    if dropout is not None:
        kwargs.update(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the "newly initialised cross-attention" report is expected
    try:
        decoder = GPT2LMHeadModel.from_pretrained(str(directory), **kwargs)
    except Exception as e:
        raise ValueError(f"--decoder {directory}: not a GPT-2 checkpoint ({str(e).splitlines()[0]})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    if decoder.config.model_type != "gpt2":
        raise ValueError(f"--decoder {directory}: a {decoder.config.model_type} model; a GPT-2 is needed")
    for key, expected in _REBUILT_DEFAULTS.items():
        if getattr(decoder.config, key, expected) != expected:
            raise ValueError(f"--decoder {directory}: {key}={getattr(decoder.config, key)!r} is not supported "
                             f"(vizcap rebuilds GPT-2 with {key}={expected!r})")
    return decoder


# ------------------------------------------------------------------------------------------------
# Encoder: a timm model, its weights, its grid


def encoder_settings(name: str, image_size: int | None, feature_index: int | None) -> dict:
    """The CaptionerConfig fields of a timm encoder: ViT-like models (tokens from forward_features)
    get feature_index None; CNNs their last feature stage unless told otherwise."""
    import timm

    try:
        pcfg = timm.get_pretrained_cfg(name)
    except Exception:
        pcfg = None
    if not timm.is_model(name.split(".")[0]):
        raise ValueError(f"--encoder {name}: not a timm model (see timm.list_models())")
    size = (pcfg.input_size[-1] if pcfg is not None else 224) if image_size is None else image_size
    mean = tuple(pcfg.mean) if pcfg is not None else (0.485, 0.456, 0.406)
    std = tuple(pcfg.std) if pcfg is not None else (0.229, 0.224, 0.225)
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):  # architecture only: no memory, no initialisation cost
                probe = timm.create_model(name, pretrained=False)
                tokens = probe.forward_features(torch.zeros(1, 3, size, size)).dim() == 3
        except Exception:
            probe = timm.create_model(name, pretrained=False)
            with torch.no_grad():
                tokens = probe.eval().forward_features(torch.zeros(1, 3, size, size)).dim() == 3
    vit = tokens and hasattr(probe, "patch_embed")
    kwargs = {}
    if vit:
        if feature_index is not None:
            raise ValueError(f"--feature-index: {name} is a ViT-like model; its tokens come from forward_features")
        if image_size is not None:
            kwargs["img_size"] = image_size
    else:
        n_stages = len(probe.feature_info)
        if feature_index is None:
            feature_index = n_stages - 1
        elif not 0 <= feature_index < n_stages:
            raise ValueError(f"--feature-index {feature_index}: {name} has feature stages 0…{n_stages - 1}")
    return {"encoder": name, "encoder_kwargs": kwargs, "feature_index": None if vit else feature_index,
            "image_size": size, "image_mean": mean, "image_std": std}


def encoder_weights(name: str, spec: str) -> tuple[str | None, str]:
    """(local weights file or None, identity string). None with "none" (random initialisation)."""
    import timm

    if spec == "none":
        return None, "none"
    if spec != "hub":
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"--encoder-weights {spec}: no such file (pass hub, none, or a .safetensors file)")
        if path.suffix != ".safetensors":
            raise ValueError(f"--encoder-weights {spec}: only .safetensors weight files are loaded")
        return str(path.resolve()), f"file:sha256:{feature_cache.file_digest(path)}"
    try:
        pcfg = timm.get_pretrained_cfg(name)
    except Exception:
        pcfg = None
    hint = f"pass --encoder-weights FILE (a local .safetensors of {name}) or --encoder-weights none (random init)"
    if pcfg is None or not (pcfg.hf_hub_id or pcfg.url):
        raise ValueError(f"--encoder {name}: timm knows no pretrained weights for it; {hint}")
    if not pcfg.hf_hub_id:
        raise ValueError(f"--encoder {name}: timm's weights for it are not safetensors on the Hugging Face hub "
                         f"(only safetensors weight files are loaded); {hint}")
    hub_filename = getattr(pcfg, "hf_hub_filename", None)
    filenames = [hub_filename] if hub_filename and hub_filename.endswith(".safetensors") else ["model.safetensors"]
    repo = pcfg.hf_hub_id.split("@")[0]
    last = None
    for filename in filenames:
        try:
            path = hub_file(repo, filename)
            return path, f"hub:{repo}/{filename}:{Path(path).parent.name}"
        except HubUnavailable:
            raise HubUnavailable(
                f"cannot fetch the weights of encoder {name!r} from the Hugging Face hub "
                f"(offline, and not in the local cache): {hint}"
            ) from None
        except Exception as e:
            last = e
    raise ValueError(f"--encoder {name}: cannot fetch its weights from {repo} ({str(last).splitlines()[0]}); {hint}")


# ------------------------------------------------------------------------------------------------
# The model


def build_model(args) -> tuple[CaptionModel, CaptionTokenizer, dict]:
    """The CaptionModel that train/photos.py trains, from its arguments (a PhotoArgs), with the decoder's
    tokenizer and {"decoder_source", "encoder_weights"}: what the weights came from."""
    problems = []  # both hub look-ups first, so that one message names everything to pass
    try:
        directory, decoder_source = decoder_dir(args.decoder)
    except HubUnavailable as e:
        problems.append(str(e))
    try:
        weights_file, weights_id = encoder_weights(args.encoder, args.encoder_weights)
    except HubUnavailable as e:
        problems.append(str(e))
    if problems:
        raise HubUnavailable("; ".join(problems))
    tokenizer = load_tokenizer(directory)
    enc = encoder_settings(args.encoder, args.image_size, args.feature_index)
    decoder = load_decoder(directory, args.mode, args.dropout)
    g = decoder.config
    if tokenizer.vocab_size != g.vocab_size:
        raise ValueError(f"--decoder {args.decoder}: tokenizer has {tokenizer.vocab_size} tokens but the model "
                         f"{g.vocab_size}; they must match")
    cfg = CaptionerConfig(  # one keyword per decoder setting: the duplicate finder's shape match here is no copy
        **enc,
        d_model=g.n_embd,
        n_prefix=args.prefix_tokens,
        mapper_heads=g.n_head,
        mapper_layers=args.mapper_layers,
        decoder_layers=g.n_layer,
        decoder_heads=g.n_head,
        max_positions=g.n_positions,
        vocab_size=g.vocab_size,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        mode=args.mode,
    )
    if cfg.n_prefix + args.max_caption_tokens + 2 > cfg.max_positions:
        raise ValueError(f"--prefix-tokens {cfg.n_prefix} + --max-caption-tokens {args.max_caption_tokens} + 2 "
                         f"exceed the decoder's {cfg.max_positions} positions")
    build_cfg = cfg
    if weights_file:  # timm loads a local file through its pretrained machinery (key filters included)
        build_cfg = replace(cfg, encoder_kwargs={**cfg.encoder_kwargs,
                                                 "pretrained_cfg_overlay": {"file": weights_file}})
    try:
        model = CaptionModel(build_cfg, pretrained_encoder=weights_file is not None, decoder=decoder)
    except (RuntimeError, KeyError) as e:
        if weights_file is None:
            raise
        raise ValueError(f"--encoder-weights {args.encoder_weights}: do not fit {args.encoder} "
                         f"({str(e).splitlines()[0][:300]})") from None
    model.cfg = cfg  # the config that rebuilds it (no weights path)
    return model, tokenizer, {"decoder_source": decoder_source, "encoder_weights": weights_id}
