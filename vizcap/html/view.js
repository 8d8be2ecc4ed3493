// One explanation, interactive, with nothing loaded from the network: the maps come from the JSON beside this script.
// The browser only decodes the stored maps, normalises them (vizcap.maps.normalize) and draws them
// (as vizcap.render.overlay does: bilinear values, then the colour scale, blended on the picture).
(() => {
  "use strict";
  const root = document.getElementById("__VZ_ID__");
  if (!root || root.vzStarted) return;
  root.vzStarted = true;
  const D = JSON.parse(root.querySelector("script.vz-data").textContent);
  const $ = (cls) => root.querySelector("." + cls);
  const T = D.tokens.length, gh = D.grid[0], gw = D.grid[1], N = gh * gw;
  const S = Object.assign({ smooth: true, playing: null }, D.view);  // the view: word, method, layer, head, …

  // -- the stored maps: 16-bit steps between each map's own minimum and maximum --------------------
  const decoded = {};
  function bytes(b64) {
    const s = atob(b64), a = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function rawMaps(name) {  // [T][N]: exp.maps(name, layer, head, "none", sinks) within the storage step
    const key = name + (S.sinks ? " sinks" : "");
    const m = D.methods[name].maps[S.sinks ? "sinks" : "raw"];
    decoded[key] = decoded[key] || bytes(m.q);
    const b = decoded[key], c = D.methods[name].per_layer_head ? (S.layer + 1) * (D.heads + 1) + S.head + 1 : 0;
    const out = [];
    for (let t = 0; t < T; t++) {
      const k = c * T + t, lo = m.lo[k], hi = m.hi[k], map = new Float64Array(N);
      for (let n = 0; n < N; n++) map[n] = lo + (b[2 * (k * N + n)] | (b[2 * (k * N + n) + 1] << 8)) * (hi - lo) / 65535;
      out.push(map);
    }
    return out;
  }
  const normalize = window.vizcapOverlay.normalize;  // vizcap/html/overlay.js, shared with the site
  function colourTop(maps, name) {  // vizcap.maps.colour_range: the top of the colour scale
    return window.vizcapOverlay.scaleTop(maps, S.normalize, D.methods[name].colour_range);
  }

  // -- drawing: the picture, then each pixel's bilinear map value coloured and blended -------------
  const picture = new Image();
  let ready = false;  // the picture is decoded and the canvases have their sizes
  function draw(canvas, map, top) {  // the one renderer: vizcap/html/overlay.js
    window.vizcapOverlay.draw(canvas, picture, map, top, { grid: [gh, gw], anchors: D.colormaps[S.cmap], opacity: S.opacity,
                                                           smooth: S.smooth });
  }
  // 4 significant digits of the colour scale's top: finer digits would be below the storage step
  const fmt = (v, top) => v.toFixed(Math.min(12, Math.max(0, 4 - Math.ceil(Math.log10(top)))));

  // -- the view -------------------------------------------------------------------------------------
  let shown = null, shownTop = 1;  // the selected word's map as drawn and its scale, for the hover read-out
  function render() {
    const info = D.methods[S.method];
    root.querySelectorAll(".vz-words button").forEach((b, i) => {
      b.classList.toggle("vz-on", i === S.word);
      b.classList.toggle("vz-done", i < S.word);
      b.setAttribute("aria-pressed", i === S.word);
    });
    $("vz-layer").disabled = $("vz-head").disabled = !info.per_layer_head;
    $("vz-help").textContent = info.help;
    $("vz-status").textContent = info.status || "";
    if (!ready) return;  // the picture is not decoded yet
    if (!T) {  // an empty caption: the picture alone
      const c = $("vz-canvas");
      c.getContext("2d", { willReadFrequently: true }).drawImage(picture, 0, 0, c.width, c.height);
      return;
    }
    const maps = normalize(rawMaps(S.method), S.normalize), top = colourTop(maps, S.method);
    shown = maps[S.word];
    shownTop = top;
    draw($("vz-canvas"), shown, top);
    const anchors = D.colormaps[S.cmap].map((c) => `rgb(${c.join(",")})`).join(",");
    $("vz-bar").style.background = `linear-gradient(to right, ${anchors})`;
    $("vz-bar-top").textContent = fmt(top, top);
    $("vz-unit").textContent = "Colour scale: " + info.units[S.normalize] + (S.sinks ? D.sink_label : "")
      + ". A negative value is drawn as 0.";
    const word = D.tokens[S.word];
    $("vz-prob").textContent = `Probability of “${word}”: ${D.probs[S.word].toFixed(2)}`;
    const alts = $("vz-alts");
    alts.textContent = "";
    const head = document.createElement("p");
    head.className = "vz-small";
    head.textContent = "The ten words the model found most likely here (the chosen one in blue): how sure it was, "
      + "not whether the word is right.";
    alts.appendChild(head);
    for (const [tok, p, chosen] of D.alts[S.word]) {
      const row = document.createElement("div"), name = document.createElement("span"), bar = document.createElement("i"),
        value = document.createElement("span");
      row.className = "vz-alt" + (chosen ? " vz-chosen" : "");
      name.textContent = tok;
      name.title = tok;
      bar.style.width = `${Math.max(0.5, 150 * p)}px`;
      value.textContent = p.toFixed(3);
      row.append(name, bar, value);
      alts.appendChild(row);
    }
    const perHead = info.per_layer_head;
    if (D.share) {
      const c = perHead ? (S.layer + 1) * (D.heads + 1) + S.head + 1 : 0;
      const where = perHead && (S.layer >= 0 || S.head >= 0) ? "the chosen layer and head" : "mean of layers and heads";
      $("vz-share").textContent = `Class token: ${(100 * D.share[c][S.word]).toFixed(1)} % of this word's `
        + `cross-attention (${where}) went to the encoder's class token, not to a patch; the map shows the patches only.`;
    }
    const thumbs = $("vz-thumbs");
    thumbs.querySelectorAll("figure").forEach((f) => {
      const name = f.dataset.method, m = normalize(rawMaps(name), S.normalize);
      f.classList.toggle("vz-on", name === S.method);
      draw(f.querySelector("canvas"), m[S.word], colourTop(m, name));
    });
  }

  // -- controls -------------------------------------------------------------------------------------
  function go(word) {
    S.word = Math.min(T - 1, Math.max(0, word));
    render();
  }
  function stop() {
    clearInterval(S.playing);
    S.playing = null;
    $("vz-play").textContent = "▶ Play";
  }
  root.querySelectorAll(".vz-words button").forEach((b, i) => b.addEventListener("click", () => { stop(); go(i); }));
  $("vz-prev").addEventListener("click", () => { stop(); go(S.word - 1); });
  $("vz-next").addEventListener("click", () => { stop(); go(S.word + 1); });
  $("vz-play").addEventListener("click", () => {
    if (S.playing) return stop();
    go(0);
    $("vz-play").textContent = "■ Stop";
    S.playing = setInterval(() => (S.word >= T - 1 ? stop() : go(S.word + 1)), 700);
  });
  const keys = (e) => {
    if (/^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName) || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      stop();
      go(S.word + (e.key === "ArrowLeft" ? -1 : 1));
    }
  };
  (D.page ? document : root).addEventListener("keydown", keys);  // in a notebook: only while the view has focus
  const settings = { "vz-method": "method", "vz-layer": "layer", "vz-head": "head", "vz-norm": "normalize", "vz-cmap": "cmap" };
  for (const [cls, key] of Object.entries(settings)) {
    $(cls).addEventListener("change", (e) => {
      S[key] = key === "layer" || key === "head" ? Number(e.target.value) : e.target.value;
      render();
    });
  }
  $("vz-opacity").addEventListener("input", (e) => { S.opacity = Number(e.target.value); render(); });
  $("vz-sinks").addEventListener("change", (e) => { S.sinks = e.target.checked; render(); });
  $("vz-smooth").addEventListener("change", (e) => { S.smooth = e.target.checked; render(); });
  $("vz-canvas").addEventListener("mousemove", (e) => {
    if (!shown) return;
    const r = e.currentTarget.getBoundingClientRect();
    const row = Math.min(gh - 1, Math.floor(((e.clientY - r.top) / r.height) * gh));
    const col = Math.min(gw - 1, Math.floor(((e.clientX - r.left) / r.width) * gw));
    $("vz-hover").textContent = `Row ${row + 1}, column ${col + 1}: ${fmt(shown[row * gw + col], shownTop)}`;
  });
  for (const name of D.order) {  // one small map per method, drawn with the same settings
    const f = document.createElement("figure"), c = document.createElement("canvas"), cap = document.createElement("figcaption");
    f.dataset.method = name;
    cap.textContent = D.methods[name].label;
    f.append(c, cap);
    f.addEventListener("click", () => { S.method = name; $("vz-method").value = name; render(); });
    $("vz-thumbs").appendChild(f);
  }
  picture.onload = () => {
    const main = $("vz-canvas"), w = picture.naturalWidth, h = picture.naturalHeight, up = Math.max(1, 480 / Math.max(w, h));
    main.width = Math.round(w * up);  // a small picture is drawn larger, so that the map is not blurred by the page
    main.height = Math.round(h * up);
    root.querySelectorAll(".vz-thumbs canvas").forEach((c) => {
      c.width = 128;
      c.height = Math.max(1, Math.round((128 * picture.naturalHeight) / picture.naturalWidth));
    });
    ready = true;
    fitPicture();
    render();
  };
  // A page of its own: the words, the picture and its colour scale on the first screen (a projector's
  // 1280×800 too), the picture no smaller than 280 px. In a notebook's frame the frame grows instead.
  function fitPicture() {
    if (!D.page || D.embedded || !ready) return;
    const canvas = $("vz-canvas"), top = canvas.getBoundingClientRect().top + window.scrollY;
    const room = window.innerHeight - top - $("vz-colourbar").offsetHeight - 16;
    // the whole left column as wide as the picture, so that the colour scale is as wide as the picture
    $("vz-left").style.maxWidth = `${Math.min(560, (Math.max(280, room) * canvas.width) / canvas.height)}px`;
  }
  window.addEventListener("resize", fitPicture);
  if (D.embedded && "ResizeObserver" in window) {  // the frame (same origin as the notebook) as tall as the view
    new ResizeObserver(() => {
      const holder = window.frameElement && window.frameElement.parentElement;
      if (holder) holder.style.height = `${Math.ceil(document.body.getBoundingClientRect().height)}px`;
    }).observe(root);
  }
  picture.src = D.image;
  render();

  // Read-only, for the browser test (tests/test_html_browser.py) and the curious: what the view shows now.
  // On the element, not a global, so that several views on one page keep apart.
  root.vizcapView = Object.freeze({
    state: () => ({ word: S.word, method: S.method, layer: S.layer, head: S.head, normalize: S.normalize,
                    sinks: S.sinks, cmap: S.cmap, opacity: S.opacity, smooth: S.smooth, playing: S.playing !== null }),
    ready: () => ready,
    currentMap: () => (shown ? Array.from(shown) : null),  // the selected word's map as drawn, one value per cell
    colourTop: () => shownTop,  // the value drawn as the top colour
    lut: () => Array.from(window.vizcapOverlay.lut(D.colormaps[S.cmap])),  // the colour scale as drawn: 1025 RGB triples
  });
})();
