// Colour scales for feature maps and heatmaps. The API sends feature maps as grey PNGs (0 = the channel's
// minimum, 255 = its maximum); the page recolours them with a lookup table, so switching scales needs no
// new request. Control points are sampled from matplotlib's perceptually uniform maps.

const STOPS = {
  gray: [[0, 0, 0], [255, 255, 255]],
  viridis: [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
    [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]],
  magma: [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122], [229, 80, 100],
    [251, 135, 97], [254, 194, 135], [252, 253, 191]],
  inferno: [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85], [227, 89, 51],
    [249, 140, 10], [249, 201, 50], [252, 255, 164]],
  // diverging: blue (negative) - white (zero) - red (positive), for signed values
  rdbu: [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
    [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]],
};

export const SCALES = { viridis: "Viridis", magma: "Magma", inferno: "Inferno", gray: "Grey", rdbu: "Blue–red (signed)" };

const cache = new Map();

/** 256×3 lookup table for a scale name. */
export function lut(name) {
  if (cache.has(name)) return cache.get(name);
  const stops = STOPS[name] || STOPS.viridis;
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i += 1) {
    const t = (i / 255) * (stops.length - 1);
    const lo = Math.floor(t);
    const hi = Math.min(lo + 1, stops.length - 1);
    const f = t - lo;
    for (let c = 0; c < 3; c += 1) table[i * 3 + c] = stops[lo][c] * (1 - f) + stops[hi][c] * f;
  }
  cache.set(name, table);
  return table;
}

/** CSS colour of a value in [0, 1] on a scale. */
export function colorOf(t, name = "viridis") {
  const table = lut(name);
  const i = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
  return `rgb(${table[i]}, ${table[i + 1]}, ${table[i + 2]})`;
}

/** Text colour readable on top of colorOf(t, name). */
export function inkOn(t, name = "viridis") {
  const table = lut(name);
  const i = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
  const luminance = 0.2126 * table[i] + 0.7152 * table[i + 1] + 0.0722 * table[i + 2];
  return luminance > 140 ? "#111" : "#fff";
}

/** Recolour grey ImageData in place (the red channel is taken as the grey level). */
export function recolor(imageData, name) {
  if (name === "gray") return imageData;
  const table = lut(name);
  const px = imageData.data;
  for (let i = 0; i < px.length; i += 4) {
    const g = px[i] * 3;
    px[i] = table[g];
    px[i + 1] = table[g + 1];
    px[i + 2] = table[g + 2];
  }
  return imageData;
}

/**
 * 256×3 lookup table from control points `[{value, rgb}]` (a scale the API draws with, such as the attention
 * maps' in GET /api/attention/methods), spanning the first point's value to the last's, linear in between.
 */
export function tableOf(stops) {
  const table = new Uint8ClampedArray(256 * 3);
  const lo = stops[0].value;
  const hi = stops[stops.length - 1].value;
  for (let i = 0; i < 256; i += 1) {
    const value = lo + ((hi - lo) * i) / 255;
    const above = stops.findIndex((s) => s.value >= value);
    const k = Math.max(0, Math.min(stops.length - 2, (above < 0 ? stops.length : above) - 1));
    const [a, b] = [stops[k], stops[k + 1]];
    const f = Math.max(0, Math.min(1, (value - a.value) / (b.value - a.value || 1)));
    for (let c = 0; c < 3; c += 1) table[i * 3 + c] = a.rgb[c] * (1 - f) + b.rgb[c] * f;
  }
  return table;
}

/** A horizontal legend canvas for a scale: a name, or a table from `tableOf`. */
export function legend(canvas, name) {
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(canvas.width, canvas.height);
  const table = typeof name === "string" ? lut(name) : name;
  for (let x = 0; x < canvas.width; x += 1) {
    const i = Math.round((x / Math.max(1, canvas.width - 1)) * 255) * 3;
    for (let y = 0; y < canvas.height; y += 1) {
      const o = (y * canvas.width + x) * 4;
      image.data.set([table[i], table[i + 1], table[i + 2], 255], o);
    }
  }
  ctx.putImageData(image, 0, 0);
}

// --- signed values, centred on zero ----------------------------------------------------------------------
// A diverging scale shows a signed number's sign: its middle colour (white) is 0, not the middle of the map's range.

/** Scales drawn centred on zero: blue for negative numbers, white for 0, red for positive ones. */
export const SIGNED = new Set(["rdbu"]);

/** The colour at `t` in [0, 1] between a scale's control points (exactly a control point's colour on one). */
function colourAt(stops, t) {
  const at = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(lo + 1, stops.length - 1);
  const f = at - lo;
  return [0, 1, 2].map((c) => stops[lo][c] * (1 - f) + stops[hi][c] * f);
}

/**
 * The grey level that holds 0 when grey 0..255 stands for [low, high] (or -1 when 0 is outside): the API's own
 * rounding, `trunc((v - low) / (high - low) * 255 + 0.5)` step by step in float32 (app/services/tiles.py).
 */
export function zeroLevel(low, high) {
  if (!(low <= 0 && high >= 0)) return -1;
  const f = Math.fround;
  const span = high > low ? f(high - low) : 1;
  return Math.min(255, Math.floor(f(f(f(f(0 - low) / span) * 255) + 0.5)));
}

/**
 * 256×3 lookup table for grey levels that stand for [low, high] (a tile's range, as the API gives it) on a
 * diverging scale centred on zero: value v is at 0.5 + v / (2 max) of the scale, max = max(|low|, |high|) (pass
 * the layer's for one range over a layer), so -v and v lie the same distance either side of white; the grey level
 * that holds 0 is the middle colour exactly.
 */
export function signedTable(low, high, name = "rdbu", max = Math.max(Math.abs(low), Math.abs(high))) {
  const stops = STOPS[name] || STOPS.rdbu;
  const table = new Uint8ClampedArray(256 * 3);
  const zero = zeroLevel(low, high);
  for (let g = 0; g < 256; g += 1) {
    const value = low + (g / 255) * (high - low);
    const t = g === zero || !(max > 0) ? 0.5 : 0.5 + value / (2 * max);
    table.set(colourAt(stops, t).map(Math.round), g * 3);
  }
  return table;
}
