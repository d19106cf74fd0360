// Feature maps arrive from the API as one greyscale PNG per node with every channel tiled into it, plus the
// tile layout (rows, columns, tile size, gap; per-tile value ranges in the PNG's X-Tile-Layout header).
// The page keeps the grey pixels and paints them with the chosen colour scale.
import { api } from "./api.js";
import { SIGNED, recolor, signedTable } from "./colormap.js";

/** Fetch a node's tiled PNG -> { grey: ImageData, layout } (layout from the header when present). */
export async function loadTiles(url, layout, { signal } = {}) {
  const response = await api(url, { as: "response", signal, label: "Fetching feature maps…" });
  const header = response.headers.get("X-Tile-Layout");
  let fullLayout = layout;
  if (header) {
    try {
      fullLayout = { ...layout, ...JSON.parse(header) };
    } catch {
      // keep the layout from the JSON answer
    }
  }
  const blob = await response.blob();
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const grey = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  bitmap.close?.();
  return { grey, layout: fullLayout };
}

/** A vector's tiles (one 1-pixel-high strip) re-flowed into a near-square block, so it can be seen. */
export function reflowVector(grey) {
  const n = grey.width * grey.height;
  const columns = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / columns);
  const out = new ImageData(columns, rows);
  for (let i = 0; i < n; i += 1) {
    out.data.set(grey.data.subarray(i * 4, i * 4 + 4), i * 4);
  }
  for (let i = n; i < columns * rows; i += 1) out.data.set([255, 255, 255, 0], i * 4);
  return out;
}

/**
 * Paint grey ImageData onto a canvas with a colour scale (the grey data is not modified). With a tile `layout`,
 * the gaps between tiles are left transparent, so they do not read as the scale's lowest colour. With `ranges`
 * (per tile, the [low, high] the API says grey 0 and 255 stand for; one tile without a layout), a signed scale is
 * centred on zero in each tile (colormap.js `signedTable`); without them every scale spans grey 0..255.
 */
export function paint(canvas, grey, scaleName, layout = null, ranges = null) {
  canvas.width = grey.width;
  canvas.height = grey.height;
  const copy = new ImageData(new Uint8ClampedArray(grey.data), grey.width, grey.height);
  if (ranges?.length && SIGNED.has(scaleName)) recolorSigned(copy, scaleName, layout, ranges);
  else recolor(copy, scaleName);
  if (layout && layout.gap > 0) {
    const stepX = layout.tile_width + layout.gap;
    const stepY = layout.tile_height + layout.gap;
    for (let y = 0; y < grey.height; y += 1) {
      const rowGap = y % stepY >= layout.tile_height;
      for (let x = 0; x < grey.width; x += 1) {
        const tile = Math.floor(y / stepY) * layout.columns + Math.floor(x / stepX);
        if (rowGap || x % stepX >= layout.tile_width || tile >= layout.tiles) copy.data[(y * grey.width + x) * 4 + 3] = 0;
      }
    }
  }
  canvas.getContext("2d").putImageData(copy, 0, 0);
}

/** Recolour grey tiles in place, each with its own zero-centred table (gaps take any: they are cleared after). */
function recolorSigned(image, name, layout, ranges) {
  const tables = ranges.map(([low, high]) => signedTable(low, high, name));
  const px = image.data;
  for (let y = 0; y < image.height; y += 1) {
    const row = layout ? Math.floor(y / (layout.tile_height + layout.gap)) * layout.columns : 0;
    for (let x = 0; x < image.width; x += 1) {
      const tile = layout ? row + Math.floor(x / (layout.tile_width + layout.gap)) : 0;
      const table = tables[tile] ?? tables[0];
      const i = (y * image.width + x) * 4;
      const g = px[i] * 3;
      px[i] = table[g];
      px[i + 1] = table[g + 1];
      px[i + 2] = table[g + 2];
    }
  }
}

/** Which tile (channel) and which unit in it a pixel of the tiled image falls on, or null on a gap. */
export function tileAt(layout, px, py) {
  const stepX = layout.tile_width + layout.gap;
  const stepY = layout.tile_height + layout.gap;
  const column = Math.floor(px / stepX);
  const row = Math.floor(py / stepY);
  const x = Math.floor(px - column * stepX);
  const y = Math.floor(py - row * stepY);
  const channel = row * layout.columns + column;
  if (x >= layout.tile_width || y >= layout.tile_height || channel >= layout.tiles || column >= layout.columns) return null;
  return { channel, y, x };
}

/** The pixel rectangle of a tile. */
export function tileRect(layout, channel) {
  const column = channel % layout.columns;
  const row = Math.floor(channel / layout.columns);
  return { x: column * (layout.tile_width + layout.gap), y: row * (layout.tile_height + layout.gap), w: layout.tile_width, h: layout.tile_height };
}

/** Whether a canvas shows anything other than one flat colour (used to wait for real pixels). */
export function isBlank(canvas) {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  for (let i = 4; i < data.length; i += 4) {
    if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]) return false;
  }
  return true;
}
