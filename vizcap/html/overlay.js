// The one map renderer of vizcap's pages (the exported page, vizcap/html/view.js, and the browser site,
// vizcap/site/app.js), as vizcap.render.overlay draws: each pixel's map value read bilinearly from the grid
// (PIL's BILINEAR, cell centres aligned; NEAREST when not smooth), coloured on the scale, blended on the picture.
window.vizcapOverlay = window.vizcapOverlay || (() => {
  "use strict";
  function lut(anchors) {  // 1025 colours per scale, its anchors interpolated linearly (vizcap.render.colorize)
    const k = anchors.length - 1, out = new Uint8ClampedArray(1025 * 3);
    for (let i = 0; i <= 1024; i++) {
      const x = (i / 1024) * k, j = Math.min(k - 1, Math.floor(x)), f = x - j;
      for (let c = 0; c < 3; c++) out[3 * i + c] = Math.round(anchors[j][c] * (1 - f) + anchors[j + 1][c] * f);
    }
    return out;
  }
  function axis(size, cells, smooth) {  // per pixel along one side: its two source cells and the second one's weight
    const i0 = new Int32Array(size), i1 = new Int32Array(size), f = new Float64Array(size);
    for (let p = 0; p < size; p++) {
      if (!smooth) {  // PIL's NEAREST
        i0[p] = i1[p] = Math.min(cells - 1, Math.floor(((p + 0.5) * cells) / size));
        continue;
      }
      const s = Math.min(cells - 1, Math.max(0, ((p + 0.5) * cells) / size - 0.5));  // PIL's BILINEAR, centres aligned
      i0[p] = Math.floor(s);
      i1[p] = Math.min(cells - 1, i0[p] + 1);
      f[p] = s - i0[p];
    }
    return { i0, i1, f };
  }
  // Draw `picture` with `map` (gh·gw values, row by row) on `canvas`; values are divided by `top` and clipped to 0…1.
  // view: {grid: [gh, gw], anchors (the colour scale's RGB anchors), opacity, smooth}
  function draw(canvas, picture, map, top, view) {
    const W = canvas.width, H = canvas.height, ctx = canvas.getContext("2d", { willReadFrequently: true }), [gh, gw] = view.grid;
    if (!canvas.vzBase || canvas.vzBase.length !== W * H * 4 || canvas.vzPicture !== picture) {  // read once per picture and size
      ctx.drawImage(picture, 0, 0, W, H);
      canvas.vzBase = ctx.getImageData(0, 0, W, H).data;
      canvas.vzPicture = picture;
    }
    const base = canvas.vzBase, img = ctx.createImageData(W, H), out = img.data, colours = lut(view.anchors), a = view.opacity;
    const X = axis(W, gw, view.smooth), Y = axis(H, gh, view.smooth), row = new Float64Array(gw);
    for (let y = 0; y < H; y++) {
      const r0 = Y.i0[y] * gw, r1 = Y.i1[y] * gw, fy = Y.f[y];
      for (let c = 0; c < gw; c++) row[c] = (map[r0 + c] * (1 - fy) + map[r1 + c] * fy) / top;
      for (let x = 0, p = 4 * y * W; x < W; x++, p += 4) {
        const v = row[X.i0[x]] * (1 - X.f[x]) + row[X.i1[x]] * X.f[x];
        const i = 3 * Math.round((v > 0 ? (v < 1 ? v : 1) : 0) * 1024);  // below 0 (or NaN) as 0, above the top as 1
        for (let c = 0; c < 3; c++) out[p + c] = base[p + c] * (1 - a) + colours[i + c] * a;
        out[p + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  }
  // vizcap.maps.normalize, the one copy in JavaScript (the exported page and the site both draw with it): a signed
  // map is scaled by its magnitudes; "none" returns a copy of the raw maps.
  const NORMALIZATIONS = ["none", "max", "sum", "global"];
  function normalize(maps, how) {
    if (!NORMALIZATIONS.includes(how)) throw new Error(`normalize must be one of ${NORMALIZATIONS.join(", ")}; got ${how}`);
    if (how === "none") return maps.map((m) => Float64Array.from(m));
    let all = 0;
    for (const m of maps) for (const v of m) all = Math.max(all, Math.abs(v));
    return maps.map((m) => {
      let d = 0;
      if (how === "global") d = all;
      else for (const v of m) d = how === "max" ? Math.max(d, Math.abs(v)) : d + Math.abs(v);
      d = Math.max(d, 1e-12);
      return Float64Array.from(m, (v) => v / d);
    });
  }
  // The top of the colour scale (vizcap.maps.colour_range): raw shares on 0…1 (a weak map stays weak), other raw
  // units on 0…their largest value; "sum" on 0…the largest share any cell holds; "max" and "global" on 0…1.
  function scaleTop(maps, normalize, colourRange) {
    let peak = 0, seen = false;
    for (const m of maps) for (const v of m) if (!Number.isNaN(v)) { peak = seen ? Math.max(peak, v) : v; seen = true; }
    const top = normalize === "none" ? (colourRange === "share" ? Math.max(1, peak) : peak) : normalize === "sum" ? peak : 1;
    return top > 0 ? top : 1;
  }
  return { lut, axis, draw, scaleTop, normalize, NORMALIZATIONS };
})();
