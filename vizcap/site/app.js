// The explorer page: pick or compose or upload a picture, caption it in this browser (engine.js), read the caption
// word by word with its maps. Maps are drawn by the one renderer of vizcap's pages (overlay.js).
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...children) => {
    const e = Object.assign(document.createElement(tag), props);
    e.append(...children);
    return e;
  };
  let site = null;
  let exp = null;  // the explanation shown (engine.js's Explanation)
  let picture = null;  // what it explains, drawn under the maps (an <img> or a canvas)
  let pictureName = "";  // its link form: scene:N, compose:…, or "" (an upload: no link)
  const view = { word: 0, method: "cross_attention", layer: -1, head: -1, normalize: "max", cmap: "viridis", opacity: 0.55,
                 smooth: true, query: "cls", vitLayer: -1, vitHead: -1, vitMethod: "attention" };
  let playing = null, busy = 0;

  function status(text) { $("status").textContent = text; }
  function note(text) { $("notes").append(el("span", { textContent: text }), el("br")); }

  // -- decoding settings ------------------------------------------------------------------------------------
  const KNOBS = ["beams", "length_penalty", "temperature", "top_k", "top_p", "seed"];
  function decoding() {
    const o = { model: $("model").value, strategy: $("strategy").value };
    if (o.strategy === "beam") { o.beams = +$("beams").value; o.length_penalty = +$("length_penalty").value; }
    if (o.strategy === "sample") {
      o.temperature = +$("temperature").value; o.top_k = +$("top_k").value; o.top_p = +$("top_p").value;
      o.seed = $("seed").value === "" ? null : +$("seed").value;
    }
    return o;
  }
  function showKnobs() {
    document.querySelectorAll(".knobs").forEach((k) => { k.hidden = k.dataset.for !== $("strategy").value; });
    $("strategy-help").textContent = site.strategies[$("strategy").value] || "";
  }

  // -- captioning a picture ---------------------------------------------------------------------------------
  async function run(source, name, keepWord = false) {
    const ticket = ++busy;
    status("Captioning…");
    const t0 = performance.now();
    try {
      const e = await window.vizcap.explanation(source, decoding());
      if (ticket !== busy) return;  // a newer request won
      exp = e;
      pictureName = name;
      if (!(source instanceof Float32Array)) picture = await asPicture(source);  // a new decoding: the same picture
      if (!keepWord) view.word = firstContentWord(exp.tokens);
      view.word = Math.min(view.word, Math.max(0, exp.tokens.length - 1));
      status(`Captioned in ${Math.round(performance.now() - t0)} ms, in this browser (ONNX Runtime Web ${site.onnxruntime_web}, one thread).`);
      renderViewer();
      if (!performance.getEntriesByName("vizcap:first-caption").length) performance.mark("vizcap:first-caption");
    } catch (err) {
      status("Could not caption this picture: " + (err && err.message ? err.message : err));
    }
  }
  async function asPicture(source) {
    if (source instanceof HTMLCanvasElement || source instanceof HTMLImageElement) return source;
    const img = new Image();
    img.src = typeof source === "string" ? source : URL.createObjectURL(source);
    await img.decode();
    return img;
  }
  function firstContentWord(tokens) {  // the app's choice: the first word that is not an article or a number
    const i = tokens.findIndex((t) => !["a", "an", "the", "two", "three"].includes(t));
    return i < 0 ? 0 : i;
  }

  // -- the viewer -------------------------------------------------------------------------------------------
  const METHODS = ["cross_attention", "prefix", "rollout"];
  function rawMaps(method) {
    const lh = site.methods[method].per_layer_head;
    return exp.raw(method, lh && view.layer >= 0 ? view.layer : null, lh && view.head >= 0 ? view.head : null);
  }
  function shownMaps(method) {
    const maps = window.vizcap.maths.normalize(rawMaps(method), view.normalize);
    return { maps, top: window.vizcapOverlay.scaleTop(maps, view.normalize, site.methods[method].colour_range) };
  }
  function drawOn(canvas, map, top) {
    window.vizcapOverlay.draw(canvas, picture, map, top, { grid: exp.grid, anchors: site.colormaps[view.cmap],
                                                            opacity: view.opacity, smooth: view.smooth });
  }
  const fmt = (v) => (Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(3) : v.toExponential(2));

  function options(select, choices, value) {
    select.textContent = "";
    for (const [v, label] of choices) select.append(el("option", { value: String(v), textContent: label, selected: String(v) === String(value) }));
  }
  function layerHeadChoices(n, what) { return [[-1, "all (mean)"], ...Array.from({ length: n }, (_, i) => [i, `${what} ${i}`])]; }

  function renderViewer() {
    const v = $("viewer");
    v.textContent = "";
    if (!exp) return;
    const T = exp.tokens.length;
    v.append(el("p", { className: "caption-line" }, el("b", { textContent: "Caption: " }),
                el("span", { id: "caption", textContent: exp.caption || "(empty: the model ended at once)" })));
    v.append(el("p", { className: "small", textContent: about() }));
    if (!T) { v.append(el("p", { textContent: "No word to explain." })); return; }
    const words = el("div", { className: "words", role: "toolbar", ariaLabel: "words of the caption" });
    exp.tokens.forEach((t, i) => {
      const b = el("button", { type: "button", textContent: t });
      b.addEventListener("click", () => { stop(); go(i); });
      words.append(b);
    });
    const steps = el("div", { className: "steps" },
      button("← Back", () => { stop(); go(view.word - 1); }), button("Next →", () => { stop(); go(view.word + 1); }),
      el("button", { type: "button", id: "play", textContent: "▶ Play", onclick: play }),
      button("Copy link to this view", copyLink),
      el("span", { className: "small", textContent: " Click a word, or use the left and right arrow keys." }));
    const canvas = el("canvas", { id: "map", ariaLabel: "the picture with the selected word's map" });
    const up = Math.max(1, 448 / Math.max(picture.width || picture.naturalWidth, picture.height || picture.naturalHeight));
    canvas.width = Math.round((picture.naturalWidth || picture.width) * up);
    canvas.height = Math.round((picture.naturalHeight || picture.height) * up);
    canvas.addEventListener("mousemove", hover);
    const left = el("div", { className: "left" }, canvas,
      el("div", { className: "colourbar" }, el("span", { id: "bar" }), el("span", { id: "bar-top" })),
      el("p", { className: "small", id: "unit" }), el("p", { className: "small", id: "hover", textContent: "Point at the picture to read a cell's value." }),
      el("p", { className: "small", id: "method-help" }), el("p", { className: "notes", id: "map-notice" }));
    const settings = el("fieldset", {}, el("legend", { textContent: "Map settings" }),
      label("Method", select("method", METHODS.map((m) => [m, site.methods[m].label]), view.method)),
      label("Layer", select("layer", layerHeadChoices(exp.layers, "layer"), view.layer)),
      label("Head", select("head", layerHeadChoices(exp.heads, "head"), view.head)), el("br"),
      label("Normalisation", select("normalize", site.normalizations.map((n) => [n, n]), view.normalize)),
      label("Colour scale", select("cmap", Object.keys(site.colormaps).map((c) => [c, c]), view.cmap)), el("br"),
      label("Opacity", el("input", { type: "range", min: 0, max: 1, step: 0.05, value: view.opacity,
                                     oninput: (e) => { view.opacity = +e.target.value; draw(); } })),
      label("Smooth", el("input", { type: "checkbox", checked: view.smooth, onchange: (e) => { view.smooth = e.target.checked; draw(); } })),
      el("p", { className: "small", textContent: site.norm_help.split(" · sinks")[0] }));
    const right = el("div", { className: "right" }, settings, el("p", { id: "prob" }), el("div", { id: "alts" }));
    v.append(words, steps, el("div", { className: "columns" }, left, right));
    v.append(el("h3", { textContent: "Every method for this word" }), el("div", { className: "thumbs", id: "thumbs" }));
    for (const m of METHODS) {
      const c = el("canvas", { width: 128, height: Math.max(1, Math.round(128 * canvas.height / canvas.width)) });
      const f = el("figure", { onclick: () => { view.method = m; $("sel-method").value = m; draw(); } }, c,
                   el("figcaption", { textContent: site.methods[m].label }));
      f.dataset.method = m;
      $("thumbs").append(f);
    }
    v.append(vitSection(), beamSection());
    draw();
  }
  function button(text, onclick) { return el("button", { type: "button", textContent: text, onclick }); }
  function label(text, control) { return el("label", {}, text + " ", control); }
  function select(key, choices, value) {
    const s = el("select", { id: "sel-" + key });
    options(s, choices, value);
    s.addEventListener("change", () => {
      view[key] = ["layer", "head"].includes(key) ? +s.value : s.value;
      draw();
    });
    return s;
  }
  function about() {
    const p = exp.params, bits = [`Model: ${site.models.find((m) => m.name === exp.model).title}`, `decoding: ${p.strategy}`];
    if (p.strategy === "beam") bits.push(`beams ${p.beams}, length penalty ${p.length_penalty}, score ${exp.score.toFixed(4)}`);
    if (p.strategy === "sample") bits.push(`temperature ${p.temperature}, top-k ${p.top_k}, top-p ${p.top_p}, seed ${exp.seed}`);
    bits.push(`log p ${exp.logprob.toFixed(4)}`, exp.ended ? "ended with <eos>" : "cut at the word limit");
    return bits.join(" · ");
  }

  let shown = null;
  function draw() {
    if (!exp || !exp.tokens.length) return;
    const info = site.methods[view.method];
    document.querySelectorAll(".words button").forEach((b, i) => {
      b.classList.toggle("on", i === view.word);
      b.classList.toggle("done", i < view.word);
      b.setAttribute("aria-pressed", i === view.word);
    });
    $("sel-layer").disabled = $("sel-head").disabled = !info.per_layer_head;
    const { maps, top } = shownMaps(view.method);
    shown = { map: maps[view.word], top };
    drawOn($("map"), shown.map, top);
    $("bar").style.background = `linear-gradient(to right, ${site.colormaps[view.cmap].map((c) => `rgb(${c})`).join(",")})`;
    $("bar-top").textContent = fmt(top);
    $("unit").textContent = `Colour scale: ${info.units[view.normalize]}. A negative value is drawn as 0.`;
    $("method-help").textContent = info.help;
    const model = site.models.find((m) => m.name === exp.model), status = model.map_status?.[view.method];
    $("map-notice").textContent = [status ? `This map on this model: ${status}.` : "", model.attention_notice || ""].join(" ").trim();
    const word = exp.tokens[view.word];
    $("prob").textContent = `Probability of “${word}”: ${exp.probs[view.word].toFixed(2)}`;
    const alts = $("alts");
    alts.textContent = "";
    alts.append(el("p", { className: "small", textContent: "The ten words the model found most likely here (the chosen one in blue): how sure it was, not whether the word is right." }));
    for (const a of exp.alternatives[view.word]) {
      const bar = el("i");
      bar.style.width = `${Math.max(0.5, 150 * a.prob)}px`;
      alts.append(el("div", { className: "alt" + (a.chosen ? " chosen" : "") }, el("span", { textContent: a.token }), bar,
                     el("span", { textContent: a.prob.toFixed(3) })));
    }
    document.querySelectorAll("#thumbs figure").forEach((f) => {
      const m = shownMaps(f.dataset.method);
      f.classList.toggle("on", f.dataset.method === view.method);
      drawOn(f.querySelector("canvas"), m.maps[view.word], m.top);
    });
    drawVit();
  }
  function hover(e) {
    if (!shown) return;
    const r = e.currentTarget.getBoundingClientRect(), [gh, gw] = exp.grid;
    const row = Math.min(gh - 1, Math.floor(((e.clientY - r.top) / r.height) * gh));
    const col = Math.min(gw - 1, Math.floor(((e.clientX - r.left) / r.width) * gw));
    $("hover").textContent = `Row ${row + 1}, column ${col + 1}: ${fmt(shown.map[row * gw + col])}`;
  }
  function go(word) {
    if (!exp || !exp.tokens.length) return;
    view.word = Math.min(exp.tokens.length - 1, Math.max(0, word));
    draw();
  }
  function stop() { clearInterval(playing); playing = null; if ($("play")) $("play").textContent = "▶ Play"; }
  function play() {
    if (playing) return stop();
    go(0);
    $("play").textContent = "■ Stop";
    playing = setInterval(() => (view.word >= exp.tokens.length - 1 ? stop() : go(view.word + 1)), 700);
  }
  document.addEventListener("keydown", (e) => {
    if (/^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName) || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") { e.preventDefault(); stop(); go(view.word + (e.key === "ArrowLeft" ? -1 : 1)); }
  });

  // -- inside the vision transformer: its own self-attention per patch ---------------------------------------
  function vitSection() {
    if (!exp.encoder) return el("span");
    const L = exp.encoder.length, H = exp.encoder[0].length;
    const canvas = el("canvas", { id: "vit", width: 320, height: 320, ariaLabel: "the vision transformer's attention" });
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect(), [gh, gw] = exp.grid;
      view.query = [Math.min(gh - 1, Math.floor(((e.clientY - r.top) / r.height) * gh)), Math.min(gw - 1, Math.floor(((e.clientX - r.left) / r.width) * gw))];
      drawVit();
    });
    const methodSel = el("select", { id: "vit-method" });
    options(methodSel, [["attention", "attention"], ["rollout", "rollout (through the blocks up to the layer)"]], view.vitMethod);
    methodSel.onchange = () => { view.vitMethod = methodSel.value; drawVit(); };
    const layerSel = el("select", { id: "vit-layer" }), headSel = el("select", { id: "vit-head" });
    options(layerSel, layerHeadChoices(L, "block"), view.vitLayer);
    options(headSel, layerHeadChoices(H, "head"), view.vitHead);
    layerSel.onchange = () => { view.vitLayer = +layerSel.value; drawVit(); };
    headSel.onchange = () => { view.vitHead = +headSel.value; drawVit(); };
    return el("details", { className: "vit" }, el("summary", { textContent: "Inside the vision transformer: where each patch looks" }),
      el("p", { className: "small", textContent: "Before any word is written, the encoder's patches attend to each other. Click a patch to see where it looks (or use the class token); the share left on the class token is reported apart, not spread over the map." }),
      el("div", { className: "columns" }, el("div", {}, canvas, el("p", { className: "small", id: "vit-note" })),
         el("div", {}, label("Query", button("class token", () => { view.query = "cls"; drawVit(); })), el("br"),
            label("Method", methodSel), el("br"), label("Block", layerSel), label("Head", headSel))));
  }
  function drawVit() {
    if (!exp || !exp.encoder || !$("vit")) return;
    const rollout = view.vitMethod === "rollout";
    $("vit-head").disabled = rollout;
    const r = exp.encoderMap(view.query, { layer: view.vitLayer >= 0 ? view.vitLayer : null,
                                           head: rollout || view.vitHead < 0 ? null : view.vitHead, method: view.vitMethod });
    const maps = window.vizcap.maths.normalize([r.map], view.normalize)[0];
    drawOn($("vit"), maps, window.vizcapOverlay.scaleTop([maps], view.normalize, "share"));
    const q = view.query === "cls" ? "the class token" : `the patch at row ${view.query[0] + 1}, column ${view.query[1] + 1}`;
    $("vit-note").textContent = `Where ${q} looks (${view.vitMethod}, normalisation ${view.normalize}); ${(100 * r.share).toFixed(1)} % of its attention stays on the class token.`;
  }

  // -- beam search: the tree it explored ------------------------------------------------------------------
  function beamSection() {
    if (exp.params.strategy !== "beam" || !exp.beam_tree.length) return el("span");
    const tree = exp.beam_tree, ns = "http://www.w3.org/2000/svg";
    const X = (t) => 30 + 90 * t, Y = (r) => 30 + 40 * r, lanes = Math.max(...tree.map((s) => s.tokens.length));
    const svg = document.createElementNS(ns, "svg");
    const add = (tag, attrs, text) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text != null) e.textContent = text;
      svg.append(e);
      return e;
    };
    // the chosen caption's path: follow the parents back from the row whose tokens are the chosen ones
    const prefixOf = (t, i) => { const out = []; for (let s = t; s >= 0; s--) { out.unshift(tree[s].token_ids[i]); i = tree[s].parents[i]; } return out; };
    const chosen = (t, i) => prefixOf(t, i).every((id, k) => id === exp.token_ids[k]) && t < exp.token_ids.length;
    let ends = 0;
    tree.forEach((s, t) => {
      s.tokens.forEach((tok, i) => {
        const py = t ? Y(s.parents[i]) : Y(0), on = chosen(t, i);
        add("line", { x1: X(t), y1: py, x2: X(t + 1), y2: Y(i), stroke: on ? "#E69F00" : "#bbb", "stroke-width": on ? 4 : 1 });
        const g = add("circle", { cx: X(t + 1), cy: Y(i), r: 5, fill: "#0072B2" });
        g.append(Object.assign(document.createElementNS(ns, "title"), { textContent: `step ${t + 1}: ${tok}, log p so far ${s.scores[i].toFixed(3)}` }));
        add("text", { x: X(t + 1), y: Y(i) - 9, "font-size": 12, "text-anchor": "middle" }, tok);
      });
      for (const f of s.finished) {
        const y = Y(lanes + 0.5 + (ends++ % 3) * 0.6);
        add("line", { x1: X(t), y1: t ? Y(f.parent) : Y(0), x2: X(t + 1), y2: y, stroke: "#ddd" });
        const d = add("path", { d: `M${X(t + 1)} ${y - 6}l6 6-6 6-6-6z`, fill: "#CC79A7" });
        d.append(Object.assign(document.createElementNS(ns, "title"), { textContent: `step ${t + 1}: ended, log p ${f.logp.toFixed(3)}, score ${f.score.toFixed(3)}` }));
      }
    });
    add("circle", { cx: X(0), cy: Y(0), r: 5, fill: "#222" });
    svg.setAttribute("width", X(tree.length) + 60);
    svg.setAttribute("height", Y(lanes + 2.5));
    const rows = exp.candidates.map((c) => el("tr", {}, el("td", { textContent: c.caption }), el("td", { textContent: c.score.toFixed(4) }),
      el("td", { textContent: c.logprob.toFixed(4) }), el("td", { textContent: c.truncated ? "cut at the word limit" : c.ended ? "ended" : "" })));
    return el("details", { open: true, className: "beam" }, el("summary", { textContent: "How beam search found this caption" }),
      el("p", { className: "small", textContent: "A column per step, a dot per hypothesis kept, pink diamonds: hypotheses that ended; the orange line is the chosen caption. Point at a dot for its log-probability." }),
      el("div", { className: "tree" }, svg),
      el("table", {}, el("tr", {}, el("th", { textContent: "caption" }), el("th", { textContent: "score" }), el("th", { textContent: "log p" }), el("th")), ...rows));
  }

  // -- pictures: gallery, compose, upload ----------------------------------------------------------------------
  const files = {};  // link image -> file
  function gallery() {
    for (const g of site.gallery) files[g.image] = g.file;
    for (const s of site.lesson) if (s.image.startsWith("scene:")) files[s.image] = s.file;
    for (const g of site.gallery) {
      const img = el("img", { src: g.file, alt: g.image, title: `${g.image}: ${g.truth}`, width: 72, height: 72 });
      img.addEventListener("click", () => run(g.file, g.image));
      $("source-gallery").append(img);
    }
  }
  const placed = [];  // the composed objects: {colour, shape, x, y, size, angle}
  function composeSetup() {
    const c = site.compose;
    options($("compose-colour"), Object.keys(c.colours).map((k) => [k, k]), "red");
    options($("compose-shape"), Object.keys(c.shapes).map((k) => [k, k]), "star");
    options($("compose-background"), Object.keys(c.backgrounds).map((k) => [k, k]), "light grey");
    $("compose-size").oninput = () => { $("compose-size-value").textContent = $("compose-size").value + " %"; };
    $("compose-background").onchange = drawComposed;
    const canvas = $("compose-canvas");
    canvas.addEventListener("click", (e) => {
      if (placed.length >= c.max_objects) return status(`A scene holds at most ${c.max_objects} objects.`);
      const r = canvas.getBoundingClientRect();
      placed.push({ colour: $("compose-colour").value, shape: $("compose-shape").value, x: (e.clientX - r.left) / r.width,
                    y: (e.clientY - r.top) / r.height, size: +$("compose-size").value / 100, angle: 0 });
      drawComposed();
    });
    canvas.addEventListener("contextmenu", (e) => {
      e.preventDefault();
      const r = canvas.getBoundingClientRect(), x = (e.clientX - r.left) / r.width, y = (e.clientY - r.top) / r.height;
      let best = -1, d = Infinity;
      placed.forEach((p, i) => { const dd = (p.x - x) ** 2 + (p.y - y) ** 2; if (dd < d) { d = dd; best = i; } });
      if (best >= 0) placed.splice(best, 1);
      drawComposed();
    });
    $("compose-clear").onclick = () => { placed.length = 0; drawComposed(); };
    $("compose-go").onclick = () => {
      if (!placed.length) return status("Place at least one object first.");
      run(snapshot(canvas), composeSpec());
    };
    drawComposed();
  }
  function snapshot(canvas) {  // a copy, so that later edits do not change the picture being explained
    const copy = el("canvas", { width: canvas.width, height: canvas.height });
    copy.getContext("2d").drawImage(canvas, 0, 0);
    return copy;
  }
  // vizcap.compose._polygons: the unit outline turned, scaled to span `size` of the shorter side, kept inside
  function drawComposed(canvas = $("compose-canvas"), objects = placed, background = $("compose-background").value) {
    const c = site.compose, W = canvas.width, H = canvas.height, ctx = canvas.getContext("2d"), short = Math.min(W, H);
    ctx.fillStyle = `rgb(${c.backgrounds[background]})`;
    ctx.fillRect(0, 0, W, H);
    for (const p of objects) {
      const size = p.size * short, a = (p.angle * Math.PI) / 180, cos = Math.cos(a), sin = Math.sin(a);
      const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
      const cx = size + 2 < W ? clip(p.x * W, size / 2 + 1, W - size / 2 - 1) : W / 2;
      const cy = size + 2 < H ? clip(p.y * H, size / 2 + 1, H - size / 2 - 1) : H / 2;
      const turned = c.shapes[p.shape].map(([x, y]) => [x * cos - y * sin, x * sin + y * cos]);
      const extent = Math.max(...turned.flat().map(Math.abs));
      ctx.beginPath();
      turned.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x / (2 * extent) * size + cx, y / (2 * extent) * size + cy));
      ctx.closePath();
      ctx.fillStyle = `rgb(${c.colours[p.colour]})`;
      ctx.fill();
    }
    return canvas;
  }
  function composeSpec(objects = placed, background = $("compose-background").value) {  // vizcap.links.compose_spec
    return "compose:" + [background.replace(/ /g, "-"), ...objects.map((p) =>
      `${p.colour}-${p.shape}-${Math.round(p.x * 100)}-${Math.round(p.y * 100)}-${Math.round(p.size * 100)}` + (Math.round(p.angle) ? `-${Math.round(p.angle)}` : ""))].join("/");
  }
  function parseCompose(spec) {  // vizcap.links.parse_compose; null if malformed
    const parts = spec.split("/"), background = parts[0].replace(/-/g, " "), c = site.compose;
    if (!(background in c.backgrounds)) return null;
    const objects = [];
    for (const part of parts.slice(1)) {
      const bits = part.split("-"), nums = bits.slice(2).map(Number);
      if (![5, 6].includes(bits.length) || nums.some((n) => !Number.isInteger(n)) || !(bits[0] in c.colours) || !(bits[1] in c.shapes)) return null;
      objects.push({ colour: bits[0], shape: bits[1], x: nums[0] / 100, y: nums[1] / 100, size: nums[2] / 100, angle: nums[3] || 0 });
    }
    return objects.length && objects.length <= c.max_objects ? { objects, background } : null;
  }
  function pictureFor(image) {  // a link's image -> [source, name], or null with a note
    if (files[image]) return [files[image], image];
    if (image.startsWith("compose:")) {
      const found = parseCompose(image.slice(8));
      if (found) return [drawComposed(el("canvas", { width: site.compose.size, height: site.compose.size }), found.objects, found.background), image];
    }
    note(`link: image=${image.slice(0, 40)} ignored (this site has ${site.gallery[0].image} … ${site.gallery[site.gallery.length - 1].image}, the lesson's scenes, and compose:…)`);
    return null;
  }

  // -- links: ?image=…&word=…&method=… as the app's (vizcap/links.py) --------------------------------------
  function copyLink() {
    if (!pictureName) return status("An uploaded picture has no link: it never leaves this computer.");
    const q = new URLSearchParams({ image: pictureName });
    if (view.word !== firstContentWord(exp.tokens)) q.set("word", view.word + 1);
    if (view.method !== "cross_attention") q.set("method", view.method);
    if (view.layer >= 0) q.set("layer", view.layer);
    if (view.head >= 0) q.set("head", view.head);
    if (view.normalize !== "max") q.set("normalize", view.normalize);
    if (exp.model !== site.default_model) q.set("model", exp.model);
    const d = decoding();
    if (d.strategy !== "greedy") for (const [k, v] of Object.entries(d)) if (k !== "model" && v != null) q.set(k, v);
    const link = location.origin + location.pathname + "?" + q.toString();
    history.replaceState(null, "", "?" + q.toString());
    (navigator.clipboard ? navigator.clipboard.writeText(link) : Promise.reject()).then(
      () => status("Link copied: " + link), () => status("Link: " + link));
  }
  async function openLink(q) {
    if (q.has("model")) {
      if (site.models.some((m) => m.name === q.get("model"))) $("model").value = q.get("model");
      else note(`link: model=${q.get("model")} ignored (this site has ${site.models.map((m) => m.name).join(", ")})`);
    }
    if (q.has("strategy")) {
      if (["greedy", "beam", "sample"].includes(q.get("strategy"))) $("strategy").value = q.get("strategy");
      else note(`link: strategy=${q.get("strategy")} ignored (greedy, beam or sample)`);
    }
    for (const k of KNOBS) if (q.has(k) && $(k)) $(k).value = q.get(k);
    showKnobs();
    for (const [k, allowed] of [["method", METHODS], ["normalize", site.normalizations]]) {
      if (!q.has(k)) continue;
      if (allowed.includes(q.get(k))) view[k] = q.get(k);
      else note(`link: ${k}=${q.get(k)} ignored (one of ${allowed.join(", ")})`);
    }
    for (const k of ["layer", "head"]) {
      if (!q.has(k)) continue;
      const n = Number(q.get(k)), most = k === "layer" ? 99 : 99;
      if (Number.isInteger(n) && n >= 0 && n <= most) view[k] = n;
      else note(`link: ${k}=${q.get(k)} ignored (a whole number from 0)`);
    }
    const found = pictureFor(q.get("image") || site.gallery[0].image) || [site.gallery[0].file, site.gallery[0].image];
    await run(found[0], found[1]);
    if (!exp) return;
    for (const k of ["layer", "head"]) {
      const n = k === "layer" ? exp.layers : exp.heads;
      if (view[k] >= n) { note(`link: ${k}=${view[k]} ignored (this model has ${k}s 0 to ${n - 1}; showing all ${k}s)`); view[k] = -1; }
    }
    if (q.has("word")) {
      const w = Number(q.get("word"));
      if (Number.isInteger(w) && w >= 1 && w <= exp.tokens.length) view.word = w - 1;
      else note(`link: word=${q.get("word")} ignored (this caption has ${exp.tokens.length} words)`);
    }
    renderViewer();
  }

  // -- the lesson ----------------------------------------------------------------------------------------------
  function lesson() {
    const box = $("lesson");
    box.append(el("p", { textContent: "A ten-minute lesson to project: each step is one sentence to say and one view. \"Open\" shows it in the explorer, ready to discuss." }));
    site.lesson.forEach((s) => {
      const open = button("Open in the explorer", async () => {
        tab("explore");
        $("model").value = s.model;
        $("strategy").value = s.view === "decoding" ? "beam" : "greedy";
        showKnobs();
        view.method = s.method;
        view.layer = view.head = -1;
        await run(s.file, s.image.startsWith("scene:") || s.image.startsWith("compose:") ? s.image : "");
        if (s.view === "heads" && exp) {  // one word, every head: the last layer, head by head (choose them above)
          view.layer = exp.layers - 1;
          renderViewer();
        }
      });
      box.append(el("article", { className: "step" }, el("img", { src: s.file, alt: s.title, width: 120 }),
        el("div", {}, el("h3", { textContent: s.title }), el("p", { textContent: s.say }),
           s.truth ? el("p", { className: "small", textContent: "True caption: " + s.truth[0] }) : "", open)));
    });
  }
  function aboutTab() {
    $("about").append(
      el("p", { textContent: `This page runs vizcap's ShapeScenes captioner (${site.models.map((m) => m.title).join("; ")}) entirely in your browser with ONNX Runtime Web ${site.onnxruntime_web}, on one thread (a static host such as GitHub Pages cannot enable the shared memory that more threads need). Nothing is sent anywhere: pictures you upload stay on this computer.` }),
      el("p", { textContent: "The model is the exported ONNX graph of the same weights as the Python package (vizcap " + site.vizcap + "). The browser computes only what the graphs leave to it: the picture's resizing (Pillow's bilinear filter, mirrored), the decoding strategies, attention rollout and the normalisations, each tested against vizcap's Python." }),
      el("p", { textContent: "The maps show where the model looked while it wrote each word, not proof of why it wrote it." }));
  }
  function tab(name) {
    document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("on", b.dataset.tab === name));
    document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== "tab-" + name; });
  }

  // -- start ---------------------------------------------------------------------------------------------------
  async function start() {
    site = await window.vizcap.loadSite();
    const loading = window.vizcap.loadModel(site.default_model);  // the slow part of a first visit: begin it first
    options($("model"), site.models.map((m) => [m.name, m.title]), site.default_model);
    document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => tab(b.dataset.tab)));
    document.querySelectorAll(".choose button").forEach((b) => b.addEventListener("click", () => {
      document.querySelectorAll(".choose button").forEach((x) => x.classList.toggle("on", x === b));
      for (const s of ["gallery", "compose", "upload"]) $("source-" + s).hidden = s !== b.dataset.source;
    }));
    $("strategy").addEventListener("change", showKnobs);
    for (const id of ["model", "strategy", ...KNOBS]) {
      $(id).addEventListener("change", () => { if (exp) run(exp.pixels, pictureName, true); });
    }
    $("upload").addEventListener("change", (e) => { if (e.target.files[0]) run(e.target.files[0], ""); });
    gallery();
    composeSetup();
    lesson();
    aboutTab();
    showKnobs();
    await loading;
    document.body.dataset.ready = "1";
    await openLink(new URLSearchParams(location.search));
  }
  start().catch((err) => status("The page could not start: " + (err && err.message ? err.message : err)));
})();
