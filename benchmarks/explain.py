"""1. explain ÷ caption on the shipped model: same images, same tokens; relevancy (through the encoder and
decoder only) per token, and occlusion per caption, each against explain on the same images."""

from __future__ import annotations


from benchmarks.models import scene_images, shipped_or_random
from benchmarks.timing import interleaved, med, paired_ratio


def bench_explain(args) -> dict:
    from vizcap.explain import explain

    cap, what = shipped_or_random()
    candidates = scene_images(args.n_images * 2)
    images, lengths = [], []
    for img in candidates:  # greedy is greedy: both decoders must write the very same tokens
        tokens, _ = cap.generate_greedy(cap.pixels([img]))
        exp = cap.explain(img)
        same = tokens[0] == exp.token_ids + ([cap.cfg.eos_id] if exp.ended else [])
        if same and len(images) < args.n_images:
            images.append(img)
            lengths.append(len(tokens[0]))
    if not images:
        raise RuntimeError("explain and caption disagree on every image: their greedy decoders differ")
    steps = sum(lengths)  # decoder steps per pass over the images (the <eos> step included)

    def caption_all():
        for img in images:
            cap.caption(img)

    def explain_all():
        for img in images:
            cap.explain(img)

    s = interleaved({"caption": caption_all, "explain": explain_all}, args.repeats, warmup=2)
    ratio = paired_ratio(s["explain"], s["caption"])

    exps = [cap.explain(img) for img in images]
    n_words = sum(len(e) for e in exps)

    def on_request(method):
        def run():
            for e in exps:
                e._relevancy = None  # computed on first use and kept: start afresh every time
                e.maps(method)
        return run

    r = interleaved({"explain": explain_all, "relevancy": on_request("relevancy"),
                     "decoder_relevancy": on_request("decoder_relevancy"), "occlusion": on_request("occlusion")},
                    max(3, args.repeats // 2), warmup=1)
    return {
        "model": what,
        "images": len(images),
        "decoder_steps": steps,
        "caption_s": med(s["caption"]),
        "explain_s": med(s["explain"]),
        "ratio": ratio,
        "explain_ms_per_token": med(s["explain"]) / steps * 1e3,
        "caption_ms_per_token": med(s["caption"]) / steps * 1e3,
        "relevancy_ms_per_token": med(r["relevancy"]) / n_words * 1e3,
        "relevancy_vs_explain": paired_ratio(r["relevancy"], r["explain"]),
        "decoder_relevancy_ms_per_token": med(r["decoder_relevancy"]) / n_words * 1e3,
        "occlusion_ms_per_caption": med(r["occlusion"]) / len(exps) * 1e3,
        "explain_ms_per_caption": med(r["explain"]) / len(exps) * 1e3,
        "occlusion_vs_explain": paired_ratio(r["occlusion"], r["explain"]),
        "samples": {"first": s, "relevancy": r},
        "words": n_words,
    }
