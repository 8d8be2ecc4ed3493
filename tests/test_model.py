"""CaptionModel: shapes, labels, the loss mask, the three modes and the encoder grid."""

from __future__ import annotations

import pytest
import timm
import torch

from vizcap.model import IGNORE, MODES, CaptionerConfig, CaptionModel, caption_loss

V = 40
PAD, BOS, EOS = 0, 1, 2

CNN = dict(encoder="mobilenetv3_small_100", feature_index=3)
VIT = dict(encoder="test_vit", feature_index=None, encoder_kwargs={"img_size": 64})


def tiny_cfg(mode: str, encoder: dict = CNN, **kw) -> CaptionerConfig:
    return CaptionerConfig(
        **encoder,
        image_size=64,
        d_model=32,
        n_prefix=3,
        decoder_layers=2,
        vocab_size=V,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=PAD,
        mode=mode,
        **kw,
    )


_MODELS: dict = {}


def tiny_model(mode: str, encoder_name: str = "cnn") -> CaptionModel:
    key = (mode, encoder_name)
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = CaptionModel(tiny_cfg(mode, CNN if encoder_name == "cnn" else VIT)).eval()
    return _MODELS[key]


def batch(B: int = 3):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(B, 3, 64, 64, generator=g)
    # <bos> w… <eos> <pad>…, captions of different lengths
    ids = torch.full((B, 7), PAD, dtype=torch.long)
    lengths = [5, 3, 1][:B]
    for b, n in enumerate(lengths):
        words = torch.randint(4, V, (n,), generator=g)
        ids[b, : n + 2] = torch.cat([torch.tensor([BOS]), words, torch.tensor([EOS])])
    return pixels, ids


@pytest.mark.parametrize("encoder_name", ["cnn", "vit"])
@pytest.mark.parametrize("mode", MODES)
def test_forward_shapes_and_labels(mode, encoder_name):
    model = tiny_model(mode, encoder_name)
    P = model.cfg.n_prefix
    assert P == (0 if mode == "cross" else 3)
    pixels, ids = batch()
    B, T = ids.shape
    with torch.no_grad():
        out = model(pixels, ids)
    gh, gw = model.grid
    assert out["logits"].shape == (B, P + T, V)
    assert out["memory"].shape == (B, gh * gw, 32)
    labels = out["labels"]
    assert labels.shape == (B, P + T)
    assert (labels[:, :P] == IGNORE).all()  # the prefix predicts nothing
    for b in range(B):
        for t in range(T):  # position P + t (input token t) predicts token t + 1
            nxt = ids[b, t + 1].item() if t + 1 < T else PAD
            expected = IGNORE if nxt == PAD else nxt
            assert labels[b, P + t].item() == expected, (b, t)
    # the eos is a target exactly once per caption; padding never is
    assert ((labels == EOS).sum(1) == 1).all()
    assert not (labels == PAD).any()
    assert torch.isfinite(out["logits"]).all()


@pytest.mark.parametrize("mode", MODES)
def test_loss_ignores_prefix_positions(mode):
    model = tiny_model(mode)
    P = model.cfg.n_prefix
    pixels, ids = batch()
    with torch.no_grad():
        out = model(pixels, ids)
    logits, labels = out["logits"], out["labels"]
    loss = caption_loss(logits, labels)
    assert torch.isfinite(loss) and loss > 0
    changed = logits.clone()
    changed[:, :P] = torch.randn_like(changed[:, :P]) * 100  # prefix positions: ignored
    ignored = labels == IGNORE
    changed[ignored] = torch.randn_like(changed[ignored]) * 100  # padding positions: ignored as well
    assert torch.equal(caption_loss(changed, labels), loss)
    # …while a labelled position does count (so the check above can fail)
    b, t = torch.nonzero(~ignored)[0].tolist()
    moved = logits.clone()
    moved[b, t, labels[b, t]] += 10.0
    assert caption_loss(moved, labels) < loss
    # and it is the mean over labelled positions
    manual = torch.nn.functional.cross_entropy(logits[~ignored], labels[~ignored])
    assert torch.allclose(loss, manual)


@pytest.mark.parametrize("mode", MODES)
def test_image_reaches_the_words_and_decoder_is_causal(mode):
    model = tiny_model(mode)
    P = model.cfg.n_prefix
    pixels, ids = batch(2)
    with torch.no_grad():
        base = model(pixels, ids)["logits"]
        other_image = model(torch.flip(pixels, dims=[0]), ids)["logits"]
        later = ids.clone()
        later[:, -1] = 5  # change only the last input token
        changed_tail = model(pixels, later)["logits"]
    # every mode sees the image at the word positions (through the prefix and/or cross-attention)
    assert not torch.allclose(base[:, P:], other_image[:, P:])
    # causal: a later token never changes an earlier position's logits
    assert torch.allclose(base[:, : P + ids.shape[1] - 1], changed_tail[:, : P + ids.shape[1] - 1], atol=1e-6)


def _cross_modules(model):
    return [n for n, _ in model.decoder.named_modules() if "crossattention" in n]


def test_prefix_mode_has_no_cross_attention():
    model = tiny_model("prefix")
    assert _cross_modules(model) == []
    assert not model.decoder.config.add_cross_attention
    assert model.mapper is not None


def test_cross_mode_has_no_prefix():
    model = tiny_model("cross")
    assert model.cfg.n_prefix == 0
    assert model.mapper is None
    assert model.prefix(torch.zeros(1, 4, 32)) == (None, None)
    assert len(_cross_modules(model)) > 0
    assert CaptionerConfig(mode="cross", n_prefix=6).n_prefix == 0


def test_both_mode_has_prefix_and_cross_attention():
    model = tiny_model("both")
    assert model.mapper is not None and model.cfg.n_prefix == 3
    assert len(_cross_modules(model)) > 0
    memory = model.encode(torch.zeros(2, 3, 64, 64))
    prefix, weights = model.prefix(memory)
    assert prefix.shape == (2, 3, 32)
    gh, gw = model.grid
    assert weights.shape == (2, model.cfg.mapper_heads, 3, gh * gw)
    assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5)  # a distribution over patches


def test_cnn_grid_is_the_feature_map():
    model = tiny_model("both", "cnn")
    ref = timm.create_model("mobilenetv3_small_100", features_only=True, out_indices=(3,)).eval()
    with torch.no_grad():
        fmap = ref(torch.zeros(1, 3, 64, 64))[-1]
    assert model.grid == (fmap.shape[2], fmap.shape[3])
    assert model.encoder.channels == fmap.shape[1]
    assert model.pos.shape == (1, fmap.shape[2] * fmap.shape[3], 32)


def test_vit_grid_is_the_patch_grid():
    model = tiny_model("both", "vit")
    vit = model.encoder.model
    assert model.grid == tuple(vit.patch_embed.grid_size) == (4, 4)  # 64 px / 16 px patches
    assert model.encoder.num_prefix_tokens >= 1  # the class token is dropped, not mapped
    with torch.no_grad():
        tokens = model.encoder(torch.zeros(2, 3, 64, 64))
    assert tokens.shape == (2, 16, model.encoder.channels)


def test_grid_follows_image_size():
    big = CaptionModel(CaptionerConfig(**CNN, image_size=128, d_model=32, n_prefix=2, decoder_layers=1,
                                       vocab_size=V, mode="prefix"))
    assert big.grid == (8, 8)  # stride 16: twice the side, twice the grid of the 64 px model (4×4)
    assert tiny_model("prefix").grid == (4, 4)


def test_unknown_config_keys_raise():
    d = tiny_cfg("both").to_dict()
    assert CaptionerConfig.from_dict(d) == tiny_cfg("both")
    with pytest.raises(ValueError, match="bogus"):
        CaptionerConfig.from_dict({**d, "bogus": 1})


@pytest.mark.parametrize(
    "bad",
    [dict(mode="sideways"), dict(mode="both", n_prefix=0), dict(d_model=30, decoder_heads=4)],
)
def test_invalid_config_values_raise(bad):
    with pytest.raises(ValueError):
        CaptionerConfig(**bad)


def test_labels_keep_first_eos_when_pad_is_eos():
    """GPT-2 BPE style (pad == eos): the first eos is a target, the padding eos's are not."""
    cfg = CaptionerConfig(**CNN, image_size=64, d_model=32, n_prefix=2, decoder_layers=1, vocab_size=V,
                          bos_id=EOS, eos_id=EOS, pad_id=EOS, mode="prefix")
    model = CaptionModel(cfg)
    ids = torch.tensor([[EOS, 7, 8, EOS, EOS, EOS], [EOS, 9, EOS, EOS, EOS, EOS]])
    labels = model.labels(ids)
    assert labels.tolist() == [
        [IGNORE, IGNORE, 7, 8, EOS, IGNORE, IGNORE, IGNORE],
        [IGNORE, IGNORE, 9, EOS, IGNORE, IGNORE, IGNORE, IGNORE],
    ]


def test_backward_reaches_encoder():
    model = tiny_model("both")
    model.zero_grad(set_to_none=True)
    pixels, ids = batch(2)
    out = model(pixels, ids)
    caption_loss(out["logits"], out["labels"]).backward()
    enc_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert enc_grads and any(g.abs().sum() > 0 for g in enc_grads)
    assert model.mapper.queries.grad is not None and model.mapper.queries.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
