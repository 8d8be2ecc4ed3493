// vizcap in the browser: the model is the two ONNX graphs that `vizcap web` exported (vizcap/onnx_export.py),
// run by ONNX Runtime Web on one WebAssembly thread. This file adds only what the browser must compute itself:
//   - preprocessing: Pillow's bilinear resize mirrored step by step, then vizcap's normalisation (vizcap/images.py);
//   - the decoding strategies of vizcap/decoding.py (greedy, beam search, sampling) around the decoder graph;
//   - the maps from the graphs' attentions, as vizcap/maps.py computes them (select, prefix, rollout, normalize).
// tests/test_web.py checks each against Python. Nothing here draws: app.js does.
(function () {
  "use strict";

  // -- small helpers ---------------------------------------------------------------------------------
  async function fetchJSON(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: ${r.status} ${r.statusText}`);
    return r.json();
  }
  function nest(data, dims) {  // a flat tensor -> nested arrays whose innermost level is a Float64Array
    if (dims.length === 1) return Float64Array.from(data.subarray ? data.subarray(0, dims[0]) : data.slice(0, dims[0]));
    const step = dims.slice(1).reduce((a, b) => a * b, 1), out = [];
    for (let i = 0; i < dims[0]; i++) out.push(nest(data.subarray(i * step, (i + 1) * step), dims.slice(1)));
    return out;
  }
  const zeros = (r, c) => Array.from({ length: r }, () => new Float64Array(c));
  function matmul(a, b) {  // [r][k] · [k][c]
    const r = a.length, k = b.length, c = k ? b[0].length : 0, out = zeros(r, c);
    for (let i = 0; i < r; i++) for (let j = 0; j < k; j++) {
      const v = a[i][j];
      if (v === 0) continue;
      const bj = b[j], oi = out[i];
      for (let x = 0; x < c; x++) oi[x] += v * bj[x];
    }
    return out;
  }
  function meanOf(mats) {  // the mean of same-shaped [r][c] matrices
    const out = zeros(mats[0].length, mats[0][0].length);
    for (const m of mats) for (let i = 0; i < m.length; i++) for (let j = 0; j < m[i].length; j++) out[i][j] += m[i][j];
    for (const row of out) for (let j = 0; j < row.length; j++) row[j] /= mats.length;
    return out;
  }
  // A serialisable result: typed arrays become plain arrays
  const plain = (x) => (ArrayBuffer.isView(x) ? Array.from(x) : Array.isArray(x) ? x.map(plain) : x);

  // Runs on a session must not overlap (ONNX Runtime Web refuses): every run waits for the previous one
  let queue = Promise.resolve();
  function serial(task) {
    const next = queue.then(task, task);
    queue = next.catch(() => {});
    return next;
  }

  // -- maths of vizcap/maps.py ----------------------------------------------------------------------------
  function residual(a) {  // Ã = ½A + ½I, rows renormalised (maps._residual)
    return a.map((row, i) => {
      const r = row.map((v, j) => 0.5 * v + (i === j ? 0.5 : 0));
      const s = r.reduce((x, y) => x + y, 0);
      return r.map((v) => v / s);
    });
  }
  function mapperMaps(resampler, blocks, imageShare) {  // maps.mapper_maps: [P][N]
    let m = resampler.map((row) => Float64Array.from(row, (v) => imageShare * v));
    for (const a of blocks || []) m = matmul(residual(a), m);
    return m;
  }
  function rollout(selfAttn, crossAttn, prefixToImage, nPrefix) {  // maps.rollout: [S][N]
    const L = selfAttn.length, S = selfAttn[0].length;
    const N = crossAttn ? crossAttn[0][0].length : prefixToImage[0].length;
    let rtt = Array.from({ length: S }, (_, i) => Float64Array.from({ length: S }, (_, j) => (i === j ? 1 : 0)));
    let rti = zeros(S, N);
    for (let l = 0; l < L; l++) {
      const a = residual(selfAttn[l]);
      rtt = matmul(a, rtt);
      rti = matmul(a, rti);
      if (crossAttn) {
        rtt = rtt.map((row) => row.map((v) => 0.5 * v));
        rti = rti.map((row, i) => row.map((v, n) => 0.5 * v + 0.5 * crossAttn[l][i][n]));
      }
    }
    if (prefixToImage && nPrefix) {
      const viaPrefix = matmul(rtt.map((row) => row.subarray(0, nPrefix)), prefixToImage);
      rti = rti.map((row, i) => row.map((v, n) => v + viaPrefix[i][n]));
    }
    return rti;
  }
  function encoderRollout(encoder, uptoLayer) {  // maps.encoder_rollout: [M][M]
    const layers = uptoLayer == null ? encoder.length : uptoLayer + 1, M = encoder[0][0].length;
    let r = Array.from({ length: M }, (_, i) => Float64Array.from({ length: M }, (_, j) => (i === j ? 1 : 0)));
    for (let l = 0; l < layers; l++) r = matmul(residual(meanOf(encoder[l])), r);
    return r;
  }
  const normalize = window.vizcapOverlay.normalize;  // vizcap/html/overlay.js, shared with the exported page
  function pick(n, value, what) {  // maps.check_layer_head: null = all (their mean); negative counts from the end
    if (value == null) return [...Array(n).keys()];
    if (!Number.isInteger(value) || value < -n || value >= n) throw new Error(`${what} must be a whole number in 0..${n - 1}; got ${value}`);
    return [(value + n) % n];
  }

  // -- preprocessing: vizcap.images.to_model_input, with Pillow's resize mirrored ---------------------------
  // Pillow (libImaging/Resample.c) resizes with a triangle filter whose support grows with the reduction
  // (antialiasing), in two passes (horizontal, then vertical), on 8-bit values with 22-bit fixed-point weights.
  const PRECISION_BITS = 32 - 8 - 2;
  function coefficients(inSize, outSize) {
    const scale = inSize / outSize, filterscale = Math.max(scale, 1), support = filterscale, ss = 1 / filterscale;
    const bounds = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      const k = new Float64Array(xmax);
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        const d = Math.abs((x + xmin - center + 0.5) * ss);
        k[x] = d < 1 ? 1 - d : 0;
        ww += k[x];
      }
      const ints = new Int32Array(xmax);
      for (let x = 0; x < xmax; x++) {
        const w = ww !== 0 ? k[x] / ww : k[x];
        ints[x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
      }
      bounds.push({ xmin, k: ints });
    }
    return bounds;
  }
  const clip8 = (v) => { const x = Math.floor(v / (1 << PRECISION_BITS)); return x < 0 ? 0 : x > 255 ? 255 : x; };
  function resizeAxis(src, w, h, outSize, horizontal) {  // one pass of Pillow's resample along one axis
    const inSize = horizontal ? w : h, cs = coefficients(inSize, outSize);
    const W = horizontal ? outSize : w, H = horizontal ? h : outSize, out = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const { xmin, k } = cs[horizontal ? x : y];
      for (let c = 0; c < 3; c++) {
        let s = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < k.length; i++) s += src[(horizontal ? y * w + xmin + i : (xmin + i) * w + x) * 3 + c] * k[i];
        out[(y * W + x) * 3 + c] = clip8(s);
      }
    }
    return out;
  }
  function pillowResize(rgb, w, h, outW, outH) {  // Image.resize((outW, outH), Image.BILINEAR) on RGB bytes
    // Horizontal pass first, as Pillow's Resample.c did; Pillow 13 sometimes runs the vertical pass first (its rule
    // is not mirrored here), and then a value may differ by one level of 255 (tests/test_web.py measures it)
    let src = rgb;
    if (outW !== w) src = resizeAxis(src, w, h, outW, true);
    if (outH !== h) src = resizeAxis(src, outW, h, outH, false);
    return src === rgb ? Uint8Array.from(rgb) : src;
  }
  const MAX_SIDE_KEPT = 2048;  // vizcap.images: larger pictures are downscaled on load
  async function rgbOf(image) {  // any picture -> {rgb, width, height}: upright, transparent parts on white
    let source = image;
    if (typeof image === "string") image = await (await fetch(image)).blob();
    if (image instanceof Blob) {
      source = await createImageBitmap(image, { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image" });
    }
    let data, width, height;
    if (typeof ImageData !== "undefined" && source instanceof ImageData) ({ data, width, height } = source);
    else {
      width = source.naturalWidth || source.videoWidth || source.width;
      height = source.naturalHeight || source.videoHeight || source.height;
      if (!width || !height) throw new Error("the picture has no pixels");
      const canvas = new OffscreenCanvas(width, height), ctx = canvas.getContext("2d", { colorSpace: "srgb" });
      ctx.drawImage(source, 0, 0);
      data = ctx.getImageData(0, 0, width, height).data;
    }
    let rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < data.length; i += 4, j += 3) {
      const a = data[i + 3];  // Pillow's alpha_composite on white, to within a rounding step
      for (let c = 0; c < 3; c++) rgb[j + c] = a === 255 ? data[i + c] : Math.round((data[i + c] * a + 255 * (255 - a)) / 255);
    }
    if (Math.max(width, height) > MAX_SIDE_KEPT) {  // Pillow first reduces by a whole factor here: close, not equal
      const scale = MAX_SIDE_KEPT / Math.max(width, height);
      const w2 = Math.max(1, Math.round(width * scale)), h2 = Math.max(1, Math.round(height * scale));
      rgb = pillowResize(rgb, width, height, w2, h2);
      width = w2;
      height = h2;
    }
    return { rgb, width, height };
  }
  function toModelInput(rgb, width, height, info) {  // [3, S, S] float32, normalised as vizcap.images.to_model_input
    const S = info.image_size, small = pillowResize(rgb, width, height, S, S), out = new Float32Array(3 * S * S);
    const f = Math.fround;
    for (let c = 0; c < 3; c++) {
      const mean = f(info.image_mean[c]), std = f(info.image_std[c]);
      for (let p = 0; p < S * S; p++) out[c * S * S + p] = f(f(f(small[p * 3 + c]) / f(255)) - mean) / std;
    }
    return out;
  }

  // -- the model ------------------------------------------------------------------------------------------
  const models = {};
  let site = null;
  async function loadSite() {
    if (!site) {
      site = await fetchJSON("site.json");
      ort.env.wasm.numThreads = 1;  // static hosts are not cross-origin isolated: no shared memory, one thread
      ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;
      performance.mark("vizcap:site");
    }
    return site;
  }
  // How much ONNX Runtime rewrites the graphs when a session is made: site.json's choice (`vizcap web`
  // measured it: benchmarks/web.py), or ?graph_optimization=… in the address to time another one.
  const LEVELS = ["disabled", "basic", "extended", "all"];
  function graphOptimization() {
    const asked = new URLSearchParams(location.search).get("graph_optimization");
    return LEVELS.includes(asked) ? asked : (site && LEVELS.includes(site.graph_optimization) ? site.graph_optimization : "all");
  }
  function loadModel(name) {
    if (!models[name]) {
      models[name] = (async () => {
        const s = await loadSite();
        const known = s.models.map((m) => m.name);
        if (!known.includes(name)) throw new Error(`no model ${JSON.stringify(name)} on this site; choose from ${known.join(", ")}`);
        const options = { executionProviders: ["wasm"], graphOptimizationLevel: graphOptimization() };
        const session = async (part) => {  // marks say where a first visit's seconds go (benchmarks/web.py)
          const made = await ort.InferenceSession.create(`models/${name}/${part}.onnx`, options);
          performance.mark(`vizcap:${name}:${part}`);
          return made;
        };
        // fetched and prepared side by side: the two downloads overlap, and so do the graphs' set-up awaits
        const [info, encoder, decoder] = await Promise.all([fetchJSON(`models/${name}/model.json`),
                                                            session("encoder"), session("decoder")]);
        return { name, info, encoder, decoder };
      })();
      models[name].catch(() => delete models[name]);
    }
    return models[name];
  }

  async function encode(model, pixels) {
    const { info } = model, S = info.image_size;
    if (!(pixels instanceof Float32Array) || pixels.length !== 3 * S * S) {
      throw new Error(`pixels must be a Float32Array of 3·${S}·${S} values (the model's input [3, ${S}, ${S}])`);
    }
    const out = await serial(() => model.encoder.run({ pixels: new ort.Tensor("float32", pixels, [1, 3, S, S]) }));
    const tensor = (name) => (out[name] ? nest(out[name].data, out[name].dims) : null);
    return { memory: out.memory, prefix: out.prefix, mapper: tensor("mapper"), mapperBlocks: tensor("mapper_blocks"),
             encoder: tensor("encoder"), tiled: {} };
  }
  function tiled(enc, name, K) {  // the encoder's output repeated for K rows (the beams)
    const key = name + K;
    if (!enc.tiled[key]) {
      const t = enc[name], one = t.data, data = new Float32Array(one.length * K);
      for (let k = 0; k < K; k++) data.set(one, k * one.length);
      enc.tiled[key] = new ort.Tensor("float32", data, [K, ...t.dims.slice(1)]);
    }
    return enc.tiled[key];
  }
  async function decode(model, enc, rows) {  // rows: K token lists of one length (each starting with <bos>)
    const K = rows.length, T = rows[0].length, ids = new BigInt64Array(K * T);
    rows.forEach((r, k) => r.forEach((id, t) => { ids[k * T + t] = BigInt(id); }));
    return serial(() => model.decoder.run({ memory: tiled(enc, "memory", K), prefix: tiled(enc, "prefix", K),
                                            input_ids: new ort.Tensor("int64", ids, [K, T]) }));
  }
  async function lastLogits(model, enc, hyps) {  // the next-token logits of each hypothesis, [K][V]
    const out = await decode(model, enc, hyps.map((h) => [model.info.bos_id, ...h.tokens]));
    const [K, S, V] = out.logits.dims, d = out.logits.data;
    return Array.from({ length: K }, (_, k) => d.subarray((k * S + S - 1) * V, (k * S + S) * V));
  }

  // -- decoding: vizcap/decoding.py's loop ----------------------------------------------------------------
  const DEFAULTS = { strategy: "greedy", beams: 1, top_k: 0, top_p: 1.0, temperature: 1.0, length_penalty: 1.0,
                     seed: null, max_tokens: 20, early_stopping: "exact" };
  function params(options, info) {
    const p = { ...DEFAULTS, ...(info.decoding || {}) };
    for (const k of Object.keys(DEFAULTS)) if (options[k] != null) p[k] = options[k];
    if (options.beams == null && p.strategy === "beam") p.beams = 4;
    const bad = (m) => { throw new Error(m); };
    if (!["greedy", "beam", "sample"].includes(p.strategy)) bad(`strategy must be one of greedy, beam, sample; got ${p.strategy}`);
    if (!Number.isInteger(p.beams) || p.beams < 1 || p.beams > 16) bad(`beams must be a whole number from 1 to 16; got ${p.beams}`);
    if (!Number.isInteger(p.top_k) || p.top_k < 0) bad(`top_k must be a whole number >= 0 (0 = off); got ${p.top_k}`);
    if (!(p.top_p > 0 && p.top_p <= 1)) bad(`top_p must be in (0, 1] (1 = off); got ${p.top_p}`);
    if (!(p.temperature > 0 && p.temperature <= 100)) bad(`temperature must be > 0 and <= 100; got ${p.temperature}`);
    if (!(Math.abs(p.length_penalty) <= 10)) bad(`length_penalty must be a number from -10 to 10; got ${p.length_penalty}`);
    if (p.seed != null && (!Number.isInteger(p.seed) || p.seed < 0)) bad(`seed must be a whole number >= 0 or null; got ${p.seed}`);
    if (!Number.isInteger(p.max_tokens) || p.max_tokens < 1) bad(`max_tokens must be a whole number >= 1; got ${p.max_tokens}`);
    if (!["exact", "heuristic", "first_k"].includes(p.early_stopping)) bad(`early_stopping must be exact, heuristic or first_k; got ${p.early_stopping}`);
    p.max_tokens = Math.min(p.max_tokens, info.token_limit);
    if (p.strategy !== "beam") { p.beams = 1; p.length_penalty = 1.0; p.early_stopping = "exact"; }
    if (p.strategy !== "sample") { p.temperature = 1.0; p.top_k = 0; p.top_p = 1.0; p.seed = null; }
    return p;
  }
  function logSoftmax(logits) {  // float64
    let m = -Infinity;
    for (const v of logits) m = Math.max(m, v);
    let s = 0;
    for (const v of logits) s += Math.exp(v - m);
    const lse = m + Math.log(s);
    return Float64Array.from(logits, (v) => v - lse);
  }
  function mulberry32(seed) {  // a small seeded generator: the same seed draws the same caption in every browser
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function filterLogits(logits, temperature, topK, topP) {  // decoding.filter_logits: removed entries become -inf
    let out = Float64Array.from(logits, (v) => v / temperature);
    if (topK && topK < out.length) {
      const kth = [...out].sort((a, b) => b - a)[topK - 1];
      out = out.map((v) => (v < kth ? -Infinity : v));
    }
    if (topP < 1) {
      const order = [...out.keys()].sort((a, b) => out[b] - out[a]);
      const p = softmax(order.map((i) => out[i]));
      let cumulative = 0;
      order.forEach((i, r) => { cumulative += p[r]; if (cumulative - p[r] >= topP) out[i] = -Infinity; });
    }
    return out;
  }
  function softmax(xs) {
    const m = Math.max(...xs), e = xs.map((v) => (v === -Infinity ? 0 : Math.exp(v - m))), s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  }
  const hypLogp = (h) => h.logps.reduce((a, b) => a + b, 0);
  const score = (h, lp) => hypLogp(h) / Math.max(h.tokens.length, 1) ** lp;
  function beamDone(done, live, K, nTokens, p) {  // decoding._beam_done
    if (!live.length) return true;
    if (done.length < K) return false;
    if (p.early_stopping === "first_k") return true;
    const lp = p.length_penalty, length = p.early_stopping === "exact" && lp > 0 ? p.max_tokens : nTokens;
    const best = Math.max(...live.map(hypLogp)) / length ** lp;
    const worstKept = done.map((h) => score(h, lp)).sort((a, b) => b - a)[K - 1];
    return best <= worstKept;
  }

  async function search(model, enc, p) {
    const { info } = model, V = info.vocab_size, eos = info.eos_id, banned = new Set(info.banned);
    const beam = p.strategy === "beam", K = beam ? p.beams : 1;
    let seed = p.seed, rng = null;
    if (p.strategy === "sample") {
      if (seed == null) seed = Math.floor(Math.random() * 2 ** 31);
      rng = mulberry32(seed);
    }
    let live = [{ tokens: [], logps: [], parent: 0 }];
    const finished = [], tree = [];
    let ended = false;
    let logits = await lastLogits(model, enc, live);
    for (let t = 0; t < p.max_tokens; t++) {
      const logp = logits.map(logSoftmax);
      const choice = logp.map((row) => row.map((v, i) => (banned.has(i) ? -Infinity : v)));
      if (beam) {
        const last = t === p.max_tokens - 1, totals = [];
        live.forEach((h, i) => { const base = hypLogp(h); choice[i].forEach((v, tok) => totals.push([base + v, i, tok])); });
        totals.sort((a, b) => b[0] - a[0]);
        const newLive = [], ends = [];
        for (const [rank, [value, i, tok]] of totals.slice(0, Math.min(2 * K, totals.length)).entries()) {
          if (value === -Infinity) break;
          const h = { tokens: [...live[i].tokens, tok], logps: [...live[i].logps, logp[i][tok]], parent: i };
          if (tok === eos) {
            if (rank < K) {
              h.finished = true;
              finished.push(h);
              ends.push({ parent: i, token: tok, logp: hypLogp(h), score: score(h, p.length_penalty) });
            }
          } else if (newLive.length < K && (!last || rank < K)) {
            h.truncated = last;
            newLive.push(h);
          }
        }
        tree.push({ token_ids: newLive.map((h) => h.tokens[h.tokens.length - 1]), parents: newLive.map((h) => h.parent),
                    scores: newLive.map(hypLogp), finished: ends, truncated: last });
        live = newLive;
        if (last) { finished.push(...live); live = []; } else if (beamDone(finished, live, K, t + 1, p)) live = [];
        if (!live.length) break;
      } else {
        let tok;
        if (p.strategy === "greedy") tok = choice[0].reduce((best, v, i) => (v > choice[0][best] ? i : best), 0);
        else {
          const allowed = logits[0].map((v, i) => (banned.has(i) ? -Infinity : v));
          const probs = softmax([...filterLogits(allowed, p.temperature, p.top_k, p.top_p)]);
          const u = rng();
          let c = 0;
          tok = probs.length - 1;
          for (let i = 0; i < probs.length; i++) { c += probs[i]; if (u < c && probs[i] > 0) { tok = i; break; } }
        }
        const h = live[0];
        live = [{ tokens: [...h.tokens, tok], logps: [...h.logps, logp[0][tok]], parent: 0, finished: tok === eos }];
        ended = tok === eos;
        tree.push({ token_ids: [tok], parents: [0], scores: [hypLogp(live[0])], finished: [] });
        if (ended) break;
      }
      if (t === p.max_tokens - 1) break;
      logits = await lastLogits(model, enc, live);
    }
    if (!beam) {
      live[0].truncated = !ended;
      return { best: live[0], tree, candidates: [live[0]], seed };
    }
    const ranked = [...finished, ...live].sort((a, b) => score(b, p.length_penalty) - score(a, p.length_penalty));
    return { best: ranked[0], tree, candidates: ranked, seed };
  }

  // -- an explanation: the caption and the attentions behind each word -------------------------------------
  class Explanation {
    constructor(model, enc, found, final, p) {
      const { info } = model, best = found.best, eos = info.eos_id, P = info.n_prefix;
      this.model = model.name;
      this.info = info;
      this.params = p;
      this.seed = found.seed;
      this.ended = best.tokens.length > 0 && best.tokens[best.tokens.length - 1] === eos && !!best.finished;
      const T = best.tokens.length - (this.ended ? 1 : 0);
      this.token_ids = best.tokens.slice(0, T);
      this.tokens = this.token_ids.map((i) => info.vocab[i]);
      this.caption = this.tokens.join(" ");
      this.probs = best.logps.slice(0, T).map(Math.exp);
      this.logprob = hypLogp(best);
      this.score = score(best, p.length_penalty);
      this.grid = info.grid;
      const text = (i) => info.vocab[i];
      this.beam_tree = found.tree.map((s) => ({ ...s, tokens: s.token_ids.map(text) }));
      this.candidates = found.candidates.slice(0, 10).map((h) => ({
        caption: h.tokens.filter((i) => i !== eos).map(text).join(" "), score: score(h, p.length_penalty),
        logprob: hypLogp(h), ended: !!h.finished, truncated: !!h.truncated }));
      this.mapper = enc.mapper;
      this.mapperBlocks = enc.mapperBlocks;
      this.encoder = enc.encoder;
      this.alternatives = [];
      this.selfFull = this.crossFull = null;
      if (final) {  // [L, 1, H, S, S] and [L, 1, H, S, N]: the whole caption read at once
        const [L, , H, S] = final.self_attention.dims, N = final.cross_attention.dims[4];
        this.selfFull = nest(final.self_attention.data, [L, H, S, S]);
        this.crossFull = nest(final.cross_attention.data, [L, H, S, N]);
        const V = final.logits.dims[2], d = final.logits.data;
        for (let j = 0; j < T; j++) {
          const probs = softmax([...d.subarray((P + j) * V, (P + j + 1) * V)]);
          const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a]).slice(0, 10);
          this.alternatives.push(order.map((i) => ({ token: text(i), prob: probs[i], chosen: i === this.token_ids[j] })));
        }
      }
    }
    get layers() { return this.info.decoder_layers; }
    get heads() { return this.info.decoder_heads; }
    // [T][N] for one word position each: the attention rows of the producing positions P + j
    rows(full, layer, head, cols) {
      const P = this.info.n_prefix, ls = pick(this.layers, layer, "layer"), hs = pick(this.heads, head, "head");
      return this.tokens.map((_, j) => {
        const out = new Float64Array(cols[1] - cols[0]);
        for (const l of ls) for (const h of hs) {
          const row = full[l][h][P + j];
          for (let n = 0; n < out.length; n++) out[n] += row[cols[0] + n];
        }
        return out.map((v) => v / (ls.length * hs.length));
      });
    }
    get prefixMaps() {  // [P][N]: each prefix token's map over the patches (Explanation.prefix_maps)
      return mapperMaps(meanOf(this.mapper), this.mapperBlocks && this.mapperBlocks.map(meanOf), 1.0);
    }
    raw(method, layer = null, head = null) {  // Explanation._raw_maps: [T][N]
      const N = this.grid[0] * this.grid[1], P = this.info.n_prefix, T = this.tokens.length;
      if (!T) return [];
      if (method === "cross_attention") return this.rows(this.crossFull, layer, head, [0, N]);
      if (method === "prefix") {
        const toPrefix = this.rows(this.selfFull, layer, head, [0, P]).map((r) => {
          const s = Math.max(r.reduce((a, b) => a + b, 0), 1e-12);
          return r.map((v) => v / s);
        });
        return matmul(toPrefix, this.prefixMaps);
      }
      if (method === "rollout") {
        if (layer != null || head != null) throw new Error("method 'rollout' combines all layers and heads; layer/head apply to cross_attention and prefix");
        const relevance = rollout(this.selfFull.map(meanOf), this.crossFull.map(meanOf),
                                  mapperMaps(meanOf(this.mapper), this.mapperBlocks && this.mapperBlocks.map(meanOf), 0.5), P)
          .slice(P, P + T);
        if (!this.encoder) return relevance;
        const M = this.encoder[0][0].length, extra = M - N, through = encoderRollout(this.encoder).slice(extra);
        return matmul(relevance, through).map((r) => r.slice(extra));
      }
      throw new Error(`method must be one of cross_attention, prefix, rollout; got ${method}`);
    }
    maps(method = "cross_attention", { layer = null, head = null, normalize: how = "none" } = {}) {  // Explanation.maps
      const [gh, gw] = this.grid;
      return normalize(this.raw(method, layer, head), how).map((m) => Array.from({ length: gh }, (_, r) => m.slice(r * gw, (r + 1) * gw)));
    }
    encoderMap(query = "cls", { layer = null, head = null, method = "attention" } = {}) {  // Explanation.encoder_maps + share
      if (!this.encoder) throw new Error("this model's encoder is not a vision transformer");
      const [gh, gw] = this.grid, N = gh * gw, M = this.encoder[0][0].length, extra = M - N;
      const index = query === "cls" ? 0 : extra + query[0] * gw + query[1];
      let row;
      if (method === "rollout") row = encoderRollout(this.encoder, layer == null ? null : (layer + this.encoder.length) % this.encoder.length)[index];
      else {
        const ls = pick(this.encoder.length, layer, "layer"), hs = pick(this.encoder[0].length, head, "head");
        row = new Float64Array(M);
        for (const l of ls) for (const h of hs) for (let k = 0; k < M; k++) row[k] += this.encoder[l][h][index][k] / (ls.length * hs.length);
      }
      return { map: row.slice(extra), share: row.slice(0, extra).reduce((a, b) => a + b, 0) };
    }
    summary(options = {}) {  // what explainInput returns: serialisable
      const view = { layer: options.layer ?? null, head: options.head ?? null, normalize: options.normalize || "none" };
      const maps = {};
      for (const m of ["cross_attention", "prefix", "rollout"]) {
        maps[m] = plain(this.maps(m, m === "rollout" ? { normalize: view.normalize } : view));
      }
      return { caption: this.caption, tokens: this.tokens, token_ids: this.token_ids, probs: this.probs, maps,
               alternatives: this.alternatives, strategy: this.params.strategy, params: this.params, seed: this.seed,
               score: this.score, logprob: this.logprob, ended: this.ended, beam_tree: this.beam_tree,
               candidates: this.candidates, grid: this.grid, model: this.model };
    }
  }

  async function explainPixels(pixels, options = {}) {  // -> an Explanation (the page keeps it to redraw)
    const s = await loadSite(), model = await loadModel(options.model || s.default_model);
    const p = params(options, model.info);
    const enc = await encode(model, pixels);
    const found = await search(model, enc, p);
    const eos = model.info.eos_id, ids = found.best.tokens, T = ids.length - (ids.length && ids[ids.length - 1] === eos ? 1 : 0);
    const final = T ? await decode(model, enc, [[model.info.bos_id, ...ids.slice(0, T - 1)]]) : null;
    const exp = new Explanation(model, enc, found, final, p);
    exp.pixels = pixels;
    return exp;
  }
  async function pixelsOf(image, modelName) {
    const s = await loadSite(), model = await loadModel(modelName || s.default_model);
    const { rgb, width, height } = await rgbOf(image);
    return toModelInput(rgb, width, height, model.info);
  }

  window.vizcap = {
    // the model's input tensor [3, H, W] (after vizcap's preprocessing) -> tokens, probabilities and the maps
    // ([words][gh][gw]; layer and head: null = their mean; normalize "none" unless options say otherwise)
    explainInput: async (pixels, options = {}) => (await explainPixels(pixels, options)).summary(options),
    // a picture (a URL, a Blob or File, an <img>, a canvas, an ImageBitmap or ImageData) -> the same
    explain: async (image, options = {}) => (await explainPixels(await pixelsOf(image, options.model), options)).summary(options),
    explanation: async (image, options = {}) => explainPixels(image instanceof Float32Array ? image : await pixelsOf(image, options.model), options),
    preprocess: async (image, options = {}) => Array.from(await pixelsOf(image, options.model)),
    loadSite,
    loadModel,
    // ms after the page began loading at which each step of a visit ended (performance marks "vizcap:…")
    timings: () => Object.fromEntries(performance.getEntriesByType("mark").filter((m) => m.name.startsWith("vizcap:"))
      .map((m) => [m.name.slice(7), Math.round(m.startTime)])),
    maths: {  // for the tests against vizcap/maps.py (nested arrays in, plain arrays out)
      rollout: (selfAttn, crossAttn, prefixToImage, nPrefix) => plain(rollout(selfAttn, crossAttn, prefixToImage, nPrefix)),
      mapperMaps: (resampler, blocks, share) => plain(mapperMaps(resampler, blocks, share)),
      encoderRollout: (encoder, upto) => plain(encoderRollout(encoder, upto)),
      normalize: (maps, how) => plain(normalize(maps, how)),
      filterLogits: (logits, t, k, p) => plain(filterLogits(logits, t, k, p)).map((v) => (v === -Infinity ? null : v)),
      resize: (rgb, w, h, ow, oh) => plain(pillowResize(Uint8Array.from(rgb), w, h, ow, oh)),
    },
  };
})();
