// The whole network at a glance (the explorer's "Overview" panel): the model's graph as it is, not flattened into a
// strip. Each layer is a volume (channels × height × width, log-scaled, drawn with the shared cuboid) with its
// name and shape; edges run from a node's right side to its consumers' left sides, so Inception-style branches stand
// side by side and ResNet-style skip connections arc over the layers they skip. Layout: longest-path layering from
// the input (a node's column is its depth), then within a column nodes keep their parents' rows, ordered by the
// barycentre of those rows. A click on a node selects that layer in the explorer; the strip's current column is
// marked here too.
import { VOLUME_COLOURS, cuboid, depthOffset, logSide } from "./cuboid.js";
import { svg } from "./dom.js";
import { columnTitles } from "./lessons.js";

const AUTO_MAIN_ABOVE = 40; // "automatic" shows every node of a network of at most this many nodes (input included)

const SLOT_W = 152; // a node: its volume, then three lines of text (name, ops, shape)
const AXIS = 44; // the volume's front face is centred this far below the slot's top: edges meet there
const LINE = 14; // the text lines' spacing (12px type: a student reads it at the screen's normal size)
const TEXT_TOP = AXIS + 18 + 13; // the first line's baseline: under the tallest front face (36)
const SLOT_H = TEXT_TOP + 2 * LINE + 5;
const PITCH_X = SLOT_W + 36;
const PITCH_Y = SLOT_H + 6;
const MARGIN_TOP = 22; // room for the skip connections' arcs over the first row
const MARGIN_X = 8;
const NAME_CHARS = 20; // of the 12px monospace name line in SLOT_W (0.6em a character)
const OPS_CHARS = 24; // of the 12px ops line
const SIDE = { lo: 4, step: 4.5, hi: 36 };
const SHORT = { batch_norm: "BN", dropout: "dropout", identity: "identity" };

/** The drawn depth of a volume of c channels: grows with log2(c), 2 for one channel, at most 48 (2048 channels). */
export function logDepth(c) {
  return Math.max(2, Math.min(48, 2 + 4.2 * Math.log2(Math.max(1, c))));
}

/** (channels, height, width) of an output shape: (C,) is C×1×1, (T, F) is T×1×F, (C, D, H, W) is C×H×W. */
function volumeOf(shape) {
  if (shape.length === 1) return [shape[0], 1, 1];
  if (shape.length === 2) return [shape[0], 1, shape[1]];
  return [shape[0], shape[shape.length - 2], shape[shape.length - 1]];
}

/**
 * The node list the strip (and this overview) shows in `mode`: "all", or else the main layers, where a convolution,
 * its batch norm and its activation make one column, shown under the id of the last of them. The API says which
 * column shows each node (`main_column` of each architecture node in `byId`; null: hidden); the input always has
 * its own. A column standing for several nodes gets `chain`: the ids of the others, in graph order.
 */
export function mainLayers(nodes, byId, mode) {
  if (mode === "all") return [...nodes];
  const chains = new Map();
  for (const node of byId.values()) {
    const column = node.main_column;
    if (column && column !== node.id) chains.set(column, [...(chains.get(column) ?? []), node.id]);
  }
  return nodes.filter((node) => node.id === "input" || byId.get(node.id)?.main_column === node.id)
    .map((node) => (chains.has(node.id) ? { ...node, chain: chains.get(node.id) } : node));
}

/**
 * The layered layout of a graph: `nodes` in graph order, each {id, inputs} with inputs among the nodes' ids.
 * Returns per id {col, row} (col: longest path from a source; a source other than the first node sits just before
 * its first consumer) and the number of columns and rows.
 */
export function layeredLayout(nodes) {
  const col = new Map();
  const consumers = new Map();
  for (const node of nodes) {
    for (const input of node.inputs) consumers.set(input, [...(consumers.get(input) ?? []), node.id]);
    col.set(node.id, node.inputs.length ? 1 + Math.max(...node.inputs.map((i) => col.get(i) ?? 0)) : 0);
  }
  // a constant (or a second input) feeds its consumer from the column before it, not from the far left
  for (const node of [...nodes].reverse()) {
    if (node.inputs.length || node === nodes[0]) continue;
    const next = (consumers.get(node.id) ?? []).map((id) => col.get(id));
    if (next.length) col.set(node.id, Math.max(0, Math.min(...next) - 1));
  }
  const columns = [];
  nodes.forEach((node, order) => {
    const c = col.get(node.id);
    (columns[c] ??= []).push({ node, order });
  });
  const row = new Map();
  let rows = 1;
  for (const members of columns) {
    if (!members) continue;
    for (const m of members) {
      const parents = m.node.inputs.map((id) => row.get(id)).filter((r) => r !== undefined);
      m.wanted = parents.length ? Math.min(...parents) : 0; // a merge stays on its main input's row
      m.bary = parents.length ? parents.reduce((a, b) => a + b, 0) / parents.length : 0;
    }
    members.sort((a, b) => a.wanted - b.wanted || a.bary - b.bary || a.order - b.order);
    let free = 0;
    for (const m of members) {
      const r = Math.max(m.wanted, free);
      row.set(m.node.id, r);
      free = r + 1;
      rows = Math.max(rows, r + 1);
    }
  }
  const place = new Map(nodes.map((n) => [n.id, { col: col.get(n.id), row: row.get(n.id) }]));
  return { place, cols: columns.length, rows };
}

/**
 * `text` in at most `n` characters, both ends kept: a dotted name loses the end of its longest inner part
 * ("block16.depthw….relu6"), anything else its middle ("a_rather_l…relu_name"). The full name is in the tooltip.
 */
export function shorten(text, n) {
  if (text.length <= n) return text;
  const parts = text.split(/([._/:-])/); // separators kept at the odd indices
  const inner = parts.map((p, i) => ({ p, i })).filter(({ i }) => i % 2 === 0 && i > 0 && i < parts.length - 1);
  const longest = inner.sort((a, b) => b.p.length - a.p.length)[0];
  const keep = longest ? longest.p.length - (text.length - n) - 1 : 0;
  if (keep >= 2) {
    parts[longest.i] = `${longest.p.slice(0, keep)}…`;
    return parts.join("");
  }
  const head = Math.ceil((n - 1) / 2);
  return `${text.slice(0, head)}…${text.slice(text.length - (n - 1 - head))}`;
}

function opsOf(node, byId) {
  return [...(node.chain ?? []).map((id) => byId.get(id)?.op ?? id), node.op];
}

export class OverviewView {
  /**
   * @param {HTMLDetailsElement} root  the panel: a <details> holding `.overview-note` and `.overview-scroll`
   * @param {object} options
   * @param {(id: string) => void} options.onSelect  a node was clicked (or Enter / Space on it)
   * @param {(open: boolean) => void} [options.onToggle]  the panel was opened or closed
   */
  constructor(root, { onSelect, onToggle = () => {} }) {
    this.root = root;
    this.note = root.querySelector(".overview-note");
    this.scroller = root.querySelector(".overview-scroll");
    this.key = null;
    this.current = null;
    this.places = new Map(); // id -> {x, y} of the node's slot
    this.groups = new Map(); // id -> its <g>
    this.edges = [];
    root.addEventListener("toggle", () => {
      onToggle(root.open);
      if (root.open) this.reveal();
    });
    const pick = (event) => {
      const node = event.target.closest?.(".ov-node");
      if (node) onSelect(node.dataset.node);
    };
    this.scroller.addEventListener("click", pick);
    this.scroller.addEventListener("keydown", (event) => {
      if ((event.key === "Enter" || event.key === " ") && event.target.closest?.(".ov-node")) {
        event.preventDefault();
        pick(event);
      }
    });
  }

  setOpen(open) {
    if (this.root.open !== Boolean(open)) this.root.open = Boolean(open);
  }

  /** Draw a model's graph (`detail`: GET /api/models/{id}); `filter`: the explorer's "Layers shown" (auto/all/main). */
  show(detail, filter = "auto") {
    if (!detail) return;
    const archNodes = detail.architecture?.nodes ?? [];
    // as the strip outside lecture mode: "all", or the main layers (lecture mode's blocks are the strip's alone)
    const all = filter === "all" || (filter === "auto" && archNodes.length + 1 <= AUTO_MAIN_ABOVE);
    const mode = all ? "all" : "main";
    if (this.key?.detail === detail && this.key.mode === mode) return;
    this.key = { detail, mode };
    const byId = new Map(archNodes.map((n) => [n.id, n]));
    const input = { id: "input", op: "input", inputs: [], output_shape: detail.architecture?.input_shape ?? detail.input_shape ?? [] };
    const shown = mainLayers([input, ...archNodes], byId, mode);
    // every node id -> the shown node standing for it (itself, or the node its chain folds into)
    const standsFor = new Map();
    for (const node of shown) for (const id of [...(node.chain ?? []), node.id]) standsFor.set(id, node.id);
    const graph = shown.map((node) => {
      const head = byId.get(node.chain?.[0] ?? node.id) ?? node;
      const inputs = [...new Set((head.inputs ?? []).map((id) => standsFor.get(id)).filter(Boolean))];
      return { ...node, inputs };
    });
    const { place, cols, rows } = layeredLayout(graph);
    const width = MARGIN_X * 2 + cols * PITCH_X - (PITCH_X - SLOT_W);
    const height = MARGIN_TOP + rows * PITCH_Y;
    this.places = new Map(graph.map((n) => {
      const p = place.get(n.id);
      return [n.id, { x: MARGIN_X + p.col * PITCH_X, y: MARGIN_TOP + p.row * PITCH_Y, ...p }];
    }));
    const occupied = new Set(graph.map((n) => `${place.get(n.id).col},${place.get(n.id).row}`));
    const volumes = new Map(graph.map((n) => [n.id, this.volumeBox(n)]));
    const edgeLayer = svg("g", { class: "ov-edges" });
    this.edges = [];
    for (const node of graph) {
      for (const from of node.inputs) {
        const path = this.edgePath(from, node.id, volumes, occupied);
        edgeLayer.append(path);
        this.edges.push(path);
      }
    }
    const nodeLayer = svg("g", { class: "ov-nodes" });
    this.groups = new Map();
    for (const node of graph) {
      const g = this.drawNode(node, byId, volumes.get(node.id));
      nodeLayer.append(g);
      this.groups.set(node.id, g);
    }
    const defs = svg("defs", {}, svg("marker", { id: "ov-arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 6,
      markerHeight: 6, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L8,4 L0,8 z", class: "ov-arrowhead" })));
    const skips = this.edges.filter((e) => e.classList.contains("ov-skip")).length;
    const merges = graph.filter((n) => n.inputs.length > 1).length;
    const picture = svg("svg", {
      class: "ov-graph", width, height, viewBox: `0 0 ${width} ${height}`, "data-mode": mode, role: "group",
      "aria-label": `The whole network: ${graph.length} nodes in ${cols} columns, ${skips} connections skipping ` +
        `ahead, ${merges} merges; click a node to select that layer`,
    }, defs, edgeLayer, nodeLayer);
    this.scroller.replaceChildren(picture);
    const folded = shown.reduce((sum, n) => sum + (n.chain?.length ?? 0), 0);
    const parts = [`${graph.length} nodes in ${cols} columns`, `${skips} edges skip ahead`, `${merges} merges`];
    parts.push(folded
      ? `${folded} nodes folded: a convolution with the batch norm and activation after it is one volume (+BN, +ReLU…), ` +
        "as with \"main layers\"; choose \"every node\" under Layers shown to unfold them"
      : "every node shown");
    this.note.textContent = parts.join(" · ");
    this.note.title = this.note.textContent;
    if (graph.length) this.groups.get(graph[0].id).setAttribute("tabindex", "0"); // one tab stop: the current node
    const current = this.current;
    this.current = null;
    this.setCurrent(current);
  }

  /** The volume's geometry in its slot: front face (x, y, w, h) and depth d, in the picture's coordinates. */
  volumeBox(node) {
    const [c, h, w] = volumeOf(node.output_shape ?? []);
    const fw = logSide(w, SIDE);
    const fh = logSide(h, SIDE);
    const d = logDepth(c);
    const { dx } = depthOffset(d);
    const slot = this.places.get(node.id);
    const x = slot.x + (SLOT_W - fw - dx) / 2;
    const y = slot.y + AXIS - fh / 2;
    return { x, y, w: fw, h: fh, d, c, axis: slot.y + AXIS };
  }

  /** An edge from `from`'s right side to `to`'s left side: straight between neighbours; a longer one runs along a
   * free row, or arcs over the nodes it skips. */
  edgePath(from, to, volumes, occupied) {
    const a = this.places.get(from);
    const b = this.places.get(to);
    const va = volumes.get(from);
    const vb = volumes.get(to);
    const x1 = va.x + va.w;
    const y1 = va.axis;
    const x2 = vb.x - 2;
    const y2 = vb.axis;
    const span = b.col - a.col;
    const free = (row) => {
      for (let c = a.col + 1; c < b.col; c += 1) if (occupied.has(`${c},${row}`)) return false;
      return true;
    };
    let d;
    const bend = (xa, ya, xb, yb) => {
      const k = Math.max(12, (xb - xa) / 2);
      return `C${xa + k},${ya} ${xb - k},${yb} ${xb},${yb}`;
    };
    if (span <= 1) {
      d = `M${x1},${y1} ${bend(x1, y1, x2, y2)}`;
    } else if (free(a.row)) {
      // along the source's row to the gap before the consumer, then into it
      const xTurn = b.x - (PITCH_X - SLOT_W);
      d = `M${x1},${y1} L${xTurn},${y1} ${bend(xTurn, y1, x2, y2)}`;
    } else if (free(b.row)) {
      const xTurn = a.x + PITCH_X;
      d = `M${x1},${y1} ${bend(x1, y1, xTurn, y2)} L${x2},${y2}`;
    } else {
      // over the nodes in between: an arc rising above the higher row's volumes, higher for longer skips
      const lift = 62 + 3 * Math.min(span, 6); // the curve's peak, 3/4 of it, clears the deepest volume (42)
      const top = Math.min(y1, y2) - lift;
      const reach = Math.min(60, (x2 - x1) / 3);
      d = `M${x1},${y1} C${x1 + reach},${top} ${x2 - reach},${top} ${x2},${y2}`;
    }
    return svg("path", {
      d, class: span > 1 ? "ov-edge ov-skip" : "ov-edge", "data-from": from, "data-to": to, "data-span": span,
      "marker-end": "url(#ov-arrow)",
    });
  }

  drawNode(node, byId, box) {
    const slot = this.places.get(node.id);
    const ops = opsOf(node, byId);
    const titles = columnTitles(node, byId);
    const opsLine = ops.map((op, i) => (i === 0 ? op : `+${SHORT[op] ?? titles[i]}`)).join(" ");
    const shape = (node.output_shape ?? []).join("×");
    const members = [...(node.chain ?? []), node.id];
    const params = members.reduce((sum, id) => sum + (byId.get(id)?.params ?? 0), 0);
    const tip = [members.length > 1 ? `${members.join(" → ")}` : node.id,
      titles.join(" → "), `output ${shape || "?"}`,
      params ? `${params.toLocaleString("en")} parameters` : null,
      node.inputs.length ? `from ${node.inputs.join(", ")}` : null].filter(Boolean).join("\n");
    const g = svg("g", {
      class: "ov-node", "data-node": node.id, "data-op": node.op, "data-col": slot.col, "data-row": slot.row,
      "data-channels": box.c, "data-folded": node.chain ? node.chain.join(" ") : null, tabindex: -1, role: "button",
      "aria-label": `${node.id}: ${titles.join(" then ")}, ${shape}`,
    });
    g.append(svg("title", {}, tip));
    g.append(svg("rect", { class: "ov-frame", x: slot.x - 3, y: slot.y, width: SLOT_W + 6, height: SLOT_H, rx: 5 }));
    const colours = node.id === "input" ? VOLUME_COLOURS.input : node.inputs.length > 1 ? VOLUME_COLOURS.filter : VOLUME_COLOURS.output;
    const volume = cuboid(box.x, box.y, box.w, box.h, box.d, colours, { slices: Math.min(8, box.c), stroke: 0.8 });
    volume.setAttribute("class", "ov-volume");
    g.append(volume);
    const cx = slot.x + SLOT_W / 2;
    const base = slot.y + TEXT_TOP;
    g.append(svg("text", { class: "ov-name", x: cx, y: base, "text-anchor": "middle" }, shorten(node.id, NAME_CHARS)));
    g.append(svg("text", { class: "ov-ops", x: cx, y: base + LINE, "text-anchor": "middle" }, shorten(opsLine, OPS_CHARS)));
    g.append(svg("text", { class: "ov-shape", x: cx, y: base + 2 * LINE, "text-anchor": "middle" }, shape));
    return g;
  }

  /**
   * Mark the node `id` (the strip's current layer; null: none) and the edges into it, and scroll it into view. It is
   * the panel's one tab stop; when a node has the focus, the focus follows the mark (the page's ← → step the layer).
   */
  setCurrent(id) {
    if (id === this.current && (id === null || this.groups.get(id)?.classList.contains("current"))) return;
    this.groups.get(this.current)?.classList.remove("current");
    this.current = id;
    for (const edge of this.edges) edge.classList.toggle("active", id !== null && edge.dataset.to === id);
    const g = this.groups.get(id);
    if (!g) return;
    g.classList.add("current");
    const focused = this.scroller.contains(document.activeElement) && document.activeElement !== g;
    for (const other of this.groups.values()) other.setAttribute("tabindex", other === g ? "0" : "-1");
    if (focused) g.focus({ preventScroll: true });
    this.reveal();
  }

  /** Scroll the panel (never the page) so the current node is in view, when it is not. */
  reveal() {
    const g = this.groups.get(this.current);
    if (!g || !this.root.open) return;
    const s = this.scroller;
    const node = g.getBoundingClientRect(); // measured: projector mode zooms the picture
    const view = s.getBoundingClientRect();
    const left = node.left - view.left - s.clientLeft;
    const top = node.top - view.top - s.clientTop;
    const inX = left >= 0 && left + node.width <= s.clientWidth;
    const inY = top >= 0 && top + node.height <= s.clientHeight;
    if (inX && inY) return;
    const smooth = !window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;
    s.scrollTo({
      left: inX ? s.scrollLeft : Math.max(0, s.scrollLeft + left - (s.clientWidth - node.width) / 2),
      top: inY ? s.scrollTop : Math.max(0, s.scrollTop + top - (s.clientHeight - node.height) / 2),
      behavior: smooth ? "smooth" : "auto",
    });
  }
}
