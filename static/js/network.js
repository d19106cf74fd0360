// The network as columns of layer volumes: per node its name, op, shape (a small cuboid: a stack of
// channels) and every channel's feature map, tiled. Maps load lazily as their column scrolls into view.
import { api, field, showError } from "./api.js";
import { drawBars } from "./bars.js";
import { SIGNED } from "./colormap.js";
import { VOLUME_COLOURS, cuboid, logSide } from "./cuboid.js";
import { el, svg } from "./dom.js";
import { loadTiles, paint, reflowVector, tileAt, tileRect } from "./featuremaps.js";
import { formatNumber } from "./grid.js";
import { columnTitles } from "./lessons.js";
import { fetchNpy } from "./npy.js";

const NEURON_LIST_MAX = 64; // vectors up to this length are drawn as labelled neurons

function miniVolume(shape) {
  // a cuboid whose depth grows with the channel count (log scale), width/height with the map size
  const [c, h, w] = shape.length === 3 ? shape : shape.length === 1 ? [shape[0], 1, 1] : [shape[0], 1, shape[shape.length - 1]];
  const side = logSide(Math.max(h, w));
  const high = logSide(h);
  const depth = Math.max(2, Math.min(30, 2 + 3 * Math.log2(c)));
  return svg("svg", { viewBox: "0 0 64 40", width: 64, height: 40, "aria-hidden": "true" },
    cuboid(4, 36 - high, side, high, depth, VOLUME_COLOURS.input, { stroke: 0.8 }));
}

/** Width / height of a node's painted maps: its tiles with their gaps, or a vector re-flowed into a near-square. */
function expectedRatio(node) {
  if (node.shape.length === 1) {
    const columns = Math.ceil(Math.sqrt(node.shape[0]));
    return columns / Math.ceil(node.shape[0] / columns);
  }
  const l = node.layout;
  if (!l?.columns || !l?.rows) return 1;
  return (l.columns * l.tile_width + (l.columns - 1) * (l.gap ?? 0)) / (l.rows * l.tile_height + (l.rows - 1) * (l.gap ?? 0));
}

/** A column's article and header (its volume, name, what it does, its shape), as the strip's columns share them. */
function columnFrame(node, index, className, name, opText, shape) {
  const header = el("header", {}, miniVolume(node.shape), el("h3", { text: name }), el("span", { class: "op", text: opText }),
    el("span", { class: "shape mono", text: shape }));
  const element = el("article", { class: className, "data-node": node.id, "data-index": String(index) }, header);
  return { element, header };
}

export function shapeText(shape) {
  return shape.join(" × ");
}

export class NetworkView {
  constructor(container, { onSelect = () => {}, onLoaded = () => {} } = {}) {
    this.container = container;
    this.onSelect = onSelect;
    this.onLoaded = onLoaded;
    this.columns = [];
    this.byId = new Map();
    this.scale = "viridis";
    this.range = "map"; // "map": grey 0..255 is each map's own minimum..maximum; "layer": the whole layer's
    this.generation = 0;
    this.fetches = new AbortController(); // aborted when the columns are replaced
    this.drawn = {}; // what the strip was last drawn from (`render`): { run, columns } or { message }
    this.marked = ""; // the step marked ("index|reveal|asked"), "" for none
    this.scaled = Promise.resolve(); // resolves once the maps are painted at `scale`
    // the connections follow the columns when the strip changes size (maps arriving, the window resized)
    new ResizeObserver(() => { if (this.lastLinks) this.drawConnections(this.lastLinks.boxes, this.lastLinks.unit); })
      .observe(container);
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) this.load(this.byId.get(entry.target.dataset.node));
      }
    }, { root: container, rootMargin: "0px 600px 0px 600px" });
  }

  /**
   * Bring the strip in line with the explorer's state and data (explorer_render.js), redrawing only what changed: the
   * columns are rebuilt when the run, the column list or the maps' range changed; another scale repaints them
   * (`scaled` resolves once painted); the step is marked again when it changed or was asked for again. With a
   * `message` (no input) the strip shows it instead; with neither (the next answer is on its way) it stays as it is.
   * `step`: { index (-1: none marked), reveal (dim the later columns), asked (how often a step was asked for) }.
   */
  render({ run, columns, archById, labels, scale, range, message, step }) {
    if (message) {
      if (this.drawn.message !== message) this.clear(message);
    } else if (run && (this.drawn.run !== run || this.drawn.columns !== columns || this.range !== range)) {
      this.scale = scale;
      this.range = range;
      this.show(run, columns, archById, labels);
    }
    this.range = range; // the next columns' maps are fetched at it
    if (scale !== this.scale) this.scaled = this.setScale(scale);
    const mark = step.index >= 0 ? `${step.index}|${step.reveal}|${step.asked}` : "";
    if (mark === this.marked) return;
    this.marked = mark;
    if (step.index >= 0) this.setStep(step.index, { reveal: step.reveal });
    else this.clearStep();
  }

  /** Remove every column: the empty state, with `message` in its place. */
  clear(message) {
    this.retire();
    this.observer.disconnect();
    this.drawn = { message };
    this.marked = "";
    this.run = null;
    this.columns = [];
    this.byId.clear();
    const note = document.createElement("p");
    note.className = "muted empty-note";
    note.textContent = message;
    this.container.replaceChildren(note);
  }

  /** Lay out one column per node of a run. `nodes`: the run's node list; `archById`: architecture entries. */
  show(run, nodes, archById, labels = []) {
    this.labels = labels;
    this.retire();
    this.observer.disconnect();
    this.drawn = { run, columns: nodes };
    this.marked = "";
    this.run = run;
    this.archById = archById;
    this.columns = [];
    this.byId.clear();
    const fragment = document.createDocumentFragment();
    nodes.forEach((node, index) => {
      const column = this.makeColumn(node, archById.get(node.id), index, nodes[index - 1]);
      this.columns.push(column);
      this.byId.set(node.id, column);
      fragment.append(column.element);
    });
    this.before = this.makeBefore();
    this.links = svg("svg", { class: "connections", id: "connections", "aria-hidden": "true" });
    this.container.replaceChildren(this.before.element, fragment, this.links);
    for (const column of this.columns) this.observer.observe(column.element);
    // the first columns are on screen at once: fetch them now rather than after the observer's first callback,
    // the first layer's maps before the input's (they are what the user waits for)
    const [input, first, ...rest] = this.columns;
    Promise.resolve(first && this.load(first)).finally(() => [input, ...rest.slice(0, 3)].forEach((c) => this.load(c)));
  }

  /** Forget the columns shown so far: their pending feature-map fetches are cancelled, late answers dropped. */
  retire() {
    this.generation += 1;
    this.fetches?.abort();
    this.fetches = new AbortController();
  }

  /**
   * Lecture mode's left slot: a picture of the step before the current one (its maps and outlines, copied). The
   * slot stays in place while the steps change, so stepping moves nothing (a column that moved from the current
   * place to the previous one would be a layout shift).
   */
  makeBefore() {
    const element = document.createElement("article");
    element.className = "layer before-slot empty";
    element.setAttribute("aria-label", "The layer before this one");
    const header = document.createElement("header");
    const title = document.createElement("h3");
    const op = document.createElement("span");
    op.className = "op";
    const shape = document.createElement("span");
    shape.className = "shape mono";
    header.append(title, op, shape);
    const body = document.createElement("div");
    body.className = "before-body";
    element.append(header, body);
    return { element, title, op, shape, body, column: null };
  }

  /** Show `column` (or nothing) in the lecture's left slot; redrawn when its maps arrive or are outlined. */
  fillBefore(column) {
    const before = this.before;
    if (!before) return;
    before.column = column ?? null;
    before.element.classList.toggle("empty", !column);
    if (!column) return;
    const header = column.element.querySelector("header");
    before.title.textContent = header.querySelector("h3")?.textContent ?? column.node.id;
    before.op.textContent = header.querySelector(".op")?.textContent ?? "";
    before.shape.textContent = header.querySelector(".shape")?.textContent ?? "";
    const list = column.element.querySelector(".neurons, .bars");
    if (list) {
      before.body.replaceChildren(list.cloneNode(true));
    } else if (column.grey) {
      const picture = document.createElement("canvas");
      picture.width = column.canvas.width;
      picture.height = column.canvas.height;
      const ctx = picture.getContext("2d");
      ctx.drawImage(column.canvas, 0, 0);
      ctx.drawImage(column.overlay, 0, 0);
      before.body.replaceChildren(picture);
    } else {
      before.body.replaceChildren();
    }
    if (!column.grey && !column.synthetic) {
      Promise.resolve(this.load(column)).then(() => { if (this.before?.column === column && column.grey) this.fillBefore(column); });
    }
  }

  /** The lecture's last step: the softmax of the class scores, the top classes as labelled bars (the API's). */
  makeProbabilities(node, index) {
    const { element, header } = columnFrame(node, index, "layer probabilities loaded", "probabilities", "Softmax",
      `top ${node.classes.length} of ${node.shape[0]} classes`);
    const bars = document.createElement("div");
    bars.className = "bars probability-bars";
    drawBars(bars, node.classes);
    const note = document.createElement("p");
    note.className = "stats small muted";
    note.textContent = `e^score / Σ e^score over all ${node.shape[0]} scores of ${node.from}`;
    element.append(bars, note);
    return { node, element, synthetic: true, loading: Promise.resolve() };
  }

  makeColumn(node, arch, index, previous) {
    if (node.synthetic === "probabilities") return this.makeProbabilities(node, index);
    const ops = columnTitles(node, this.archById).map((t) => t.replace("Batch normalisation", "BN")).join(" → ");
    const { element, header } = columnFrame(node, index, "layer", node.id, ops, shapeText(node.shape));
    // where the data comes from, when it is not simply the column on the left: skip connections, branches
    const sources = (node.chain ? this.archById?.get(node.chain[0])?.inputs : arch?.inputs) ?? [];
    if (sources.length > 1 || (sources.length === 1 && previous && sources[0] !== previous.id)) {
      const from = document.createElement("span");
      from.className = "from";
      from.textContent = `← ${sources.join(" + ")}`;
      from.title = `inputs: ${sources.join(", ")}`;
      header.append(from);
    }
    const figure = document.createElement("div");
    figure.className = "maps";
    const canvas = document.createElement("canvas");
    canvas.className = "tiles";
    canvas.width = 1;
    canvas.height = 1;
    canvas.tabIndex = 0;
    const vector = node.shape.length === 1;
    canvas.setAttribute("aria-label", `${node.id}: ${vector ? `${node.shape[0]} numbers` : `${node.layout.tiles} feature maps of ${node.layout.tile_height}×${node.layout.tile_width}`}; click one to inspect it`);
    // the maps' shape is known before they arrive (the layout), so the column does not change shape when they do
    figure.style.setProperty("--ratio", String(expectedRatio(node)));
    const overlay = document.createElement("canvas");
    overlay.className = "overlay";
    overlay.setAttribute("aria-hidden", "true");
    figure.append(canvas, overlay);
    const stats = document.createElement("p");
    stats.className = "stats small muted";
    stats.textContent = `${node.min.toFixed(2)} … ${node.max.toFixed(2)}` +
      (node.zero_fraction > 0.01 ? ` · ${Math.round(node.zero_fraction * 100)}% zeros` : "");
    stats.title = `The smallest and the largest number in ${node.id} (all its maps)` +
      (node.zero_fraction > 0.01 ? `; ${Math.round(node.zero_fraction * 100)}% of its numbers are exactly 0 (a ReLU switched those neurons off)` : "");
    element.append(figure, stats);
    const column = { node, arch, element, canvas, overlay, vector, grey: null, layout: node.layout, loading: null };
    canvas.addEventListener("click", (event) => this.pick(column, event));
    // the channel and position under the pointer, as a tooltip (what a click would explain)
    canvas.addEventListener("mousemove", (event) => {
      const hit = this.hitAt(column, event);
      canvas.title = !hit ? "" : hit.y === null ? `${node.id}[${hit.channel}]: click to see how it was computed`
        : `channel ${hit.channel}, row ${hit.y}, column ${hit.x}: click to see how this neuron was computed`;
    });
    canvas.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.onSelect(column, { channel: 0, y: 0, x: 0 });
      }
    });
    return column;
  }

  /** The unit under a pointer event on a column's maps: {channel, y, x} (y and x null for a vector), or null. */
  hitAt(column, event) {
    if (!column.grey) return null;
    const rect = column.canvas.getBoundingClientRect();
    const px = ((event.clientX - rect.left) / rect.width) * column.canvas.width;
    const py = ((event.clientY - rect.top) / rect.height) * column.canvas.height;
    if (column.vector) {
      const index = Math.floor(py) * column.canvas.width + Math.floor(px);
      return index < column.node.shape[0] ? { channel: index, y: null, x: null } : null;
    }
    return tileAt(column.layout, px, py);
  }

  pick(column, event) {
    const hit = this.hitAt(column, event);
    if (hit) this.onSelect(column, hit);
  }

  /** Fetch and paint a column's maps (once); resolves when painted. */
  load(column) {
    if (!column || column.loading || column.synthetic) return column?.loading;
    const generation = this.generation;
    column.element.classList.add("loading");
    const tiles = loadTiles(this.atRange(column.node.png_url), column.node.layout, { signal: this.fetches.signal });
    // the tile ranges come beside the tiles; asked again after them in case a signed scale was chosen meanwhile
    column.loading = Promise.all([tiles, this.rangesOf(column)]).then(([loaded]) => this.rangesOf(column).then(() => loaded)).then(({ grey, layout }) => {
      if (generation !== this.generation) return;
      column.layout = layout;
      column.grey = column.vector ? reflowVector(grey) : grey;
      paint(column.canvas, column.grey, this.scale, column.vector ? null : layout, column.ranges);
      column.overlay.width = column.canvas.width;
      column.overlay.height = column.canvas.height;
      // the maps' box takes the tiles' own shape, so the overlay drawn over it lies on the tiles (no letterbox)
      column.canvas.parentElement.style.setProperty("--ratio", String(column.canvas.width / column.canvas.height));
      column.element.classList.remove("loading");
      column.element.classList.add("loaded");
      if (column.vector && column.node.shape[0] <= NEURON_LIST_MAX) return this.drawNeurons(column);
      return undefined;
    }).then(() => {
      if (generation === this.generation && column.grey) this.onLoaded(column);
    }).catch((err) => {
      column.loading = null;
      column.element.classList.remove("loading");
      if (generation !== this.generation) return; // cancelled: these columns are gone
      showError(err, `feature maps of ${column.node.id}`);
    });
    return column.loading;
  }

  /** A short vector (a fully connected layer's output, the class scores) as a column of labelled neurons. */
  async drawNeurons(column) {
    const values = await fetchNpy(column.node.npy_url);
    const data = Array.from(values.data);
    const top = Math.max(1e-9, ...data.map(Math.abs));
    const last = this.run.nodes[this.run.nodes.length - 1]?.id === column.node.id;
    const best = data.indexOf(Math.max(...data));
    const list = document.createElement("ol");
    list.className = "neurons";
    list.start = 0;
    data.forEach((v, i) => {
      const item = document.createElement("li");
      item.tabIndex = 0;
      item.className = i === best && last ? "best" : "";
      const label = last && this.labels[i] !== undefined ? this.labels[i] : String(i);
      item.innerHTML = '<span class="neuron-label"></span><span class="neuron-bar"><span></span></span><span class="neuron-value mono"></span>';
      item.querySelector(".neuron-label").textContent = label;
      // a signed bar around zero (the track's middle): right and red for a positive number, left and blue below
      const bar = item.querySelector(".neuron-bar span");
      const half = (Math.abs(v) / top) * 50;
      bar.style.width = `${half}%`;
      bar.style.marginLeft = `${v >= 0 ? 50 : 50 - half}%`;
      bar.style.background = v >= 0 ? "#d6604d" : "#4393c3";
      item.querySelector(".neuron-value").textContent = formatNumber(v);
      item.title = `${column.node.id}[${i}] = ${v}`;
      const pick = () => this.onSelect(column, { channel: i, y: null, x: null });
      item.addEventListener("click", pick);
      item.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
      list.append(item);
    });
    column.element.querySelector(".maps").replaceChildren(list);
    column.element.classList.add("neuron-column");
    list.setAttribute("aria-label", `${column.node.id}: ${data.length} neurons; press Enter on one to see how it was computed`);
  }

  /** Repaint every loaded column with scale `name`; resolves once painted (a signed scale fetches tile ranges). */
  setScale(name) {
    this.scale = name;
    const generation = this.generation;
    return Promise.all(this.columns.filter((c) => c.grey).map((column) => this.rangesOf(column).then(() => {
      if (generation !== this.generation || this.scale !== name) return;
      paint(column.canvas, column.grey, name, column.vector ? null : column.layout, column.ranges);
    }))).catch((err) => {
      if (generation === this.generation) showError(err, "the maps' value ranges");
    });
  }

  /** A node's URL at the maps' range: the API's `scale=layer` (one range for every map of it), else its default. */
  atRange(url) {
    return this.range === "layer" ? `${url}?scale=layer` : url;
  }

  /**
   * For a signed scale, a column's tile ranges, once (GET …/nodes/{id}.json: per tile the [low, high] grey 0 and 255
   * stand for, at the maps' range), which the scale is centred on zero with; nothing to fetch for the others.
   */
  rangesOf(column) {
    if (!SIGNED.has(this.scale) || column.ranges) return Promise.resolve();
    column.rangesLoading ??= api(this.atRange(column.node.png_url.replace(/\.png$/, ".json")), {
      signal: this.fetches.signal, label: "Fetching the maps' value ranges…",
    }).then((answer) => {
      column.ranges = field(field(answer, "layout", "object"), "ranges");
    }).finally(() => {
      column.rangesLoading = null;
    });
    return column.rangesLoading;
  }

  /** Show columns up to `index` (later ones dimmed), mark `index` as current, and bring it into view. */
  setStep(index, { reveal = true } = {}) {
    this.columns.forEach((column, i) => {
      column.element.classList.toggle("current", i === index);
      column.element.classList.toggle("pending", reveal && i > index);
      column.element.classList.toggle("previous", i === index - 1);
    });
    this.fillBefore(this.columns[index - 1]);
    const current = this.columns[index];
    if (current) {
      this.load(current);
      // scroll the row of columns only (scrollIntoView would scroll the page too)
      const left = current.element.offsetLeft - (this.container.clientWidth - current.element.clientWidth) / 2;
      const smooth = !window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;
      this.container.scrollTo({ left: Math.max(0, left), behavior: smooth ? "smooth" : "auto" });
    }
  }

  clearStep() {
    for (const column of this.columns) column.element.classList.remove("current", "pending", "previous");
    this.fillBefore(null);
  }

  /**
   * Outline boxes on every tile of some columns: `boxes` maps node id -> {y: [start, end], x: [start, end]}
   * (inclusive, in that layer's own units); `unit` marks the selected unit {node, channel, y, x}.
   */
  highlight(boxes, unit) {
    for (const column of this.columns) {
      if (column.synthetic) continue;
      const ctx = column.overlay.getContext("2d");
      ctx.clearRect(0, 0, column.overlay.width, column.overlay.height);
      column.element.classList.toggle("in-field", Boolean(boxes?.[column.node.id]));
      if (!column.grey || column.vector) continue;
      const box = boxes?.[column.node.id];
      const lineWidth = Math.max(1.5, column.canvas.width / 110);
      if (box) {
        ctx.strokeStyle = "#ffb000";
        ctx.fillStyle = "rgba(255, 176, 0, 0.3)";
        ctx.lineWidth = lineWidth;
        for (let c = 0; c < column.layout.tiles; c += 1) {
          const t = tileRect(column.layout, c);
          const y0 = Math.max(0, box.y[0]);
          const y1 = Math.min(column.layout.tile_height - 1, box.y[1]);
          const x0 = Math.max(0, box.x[0]);
          const x1 = Math.min(column.layout.tile_width - 1, box.x[1]);
          if (y1 < y0 || x1 < x0) continue;
          ctx.fillRect(t.x + x0, t.y + y0, x1 - x0 + 1, y1 - y0 + 1);
          ctx.strokeRect(t.x + x0, t.y + y0, x1 - x0 + 1, y1 - y0 + 1);
          const ring = column.canvas.width / 25;
          if (Math.max(x1 - x0, y1 - y0) + 1 < ring) {
            // a field a few pixels wide would vanish at column size: ring it (dark under orange) so it can be found
            ctx.beginPath();
            ctx.arc(t.x + (x0 + x1 + 1) / 2, t.y + (y0 + y1 + 1) / 2, ring, 0, 2 * Math.PI);
            ctx.strokeStyle = "rgba(0, 0, 0, 0.7)";
            ctx.lineWidth = lineWidth * 2.2;
            ctx.stroke();
            ctx.strokeStyle = "#ffb000";
            ctx.lineWidth = lineWidth;
            ctx.stroke();
          }
        }
      }
      if (unit && unit.node === column.node.id && unit.y !== null) {
        const t = tileRect(column.layout, unit.channel);
        ctx.strokeStyle = "#1f5fbf";
        ctx.lineWidth = lineWidth * 2;
        ctx.strokeRect(t.x - lineWidth, t.y - lineWidth, t.w + 2 * lineWidth, t.h + 2 * lineWidth);
        ctx.fillStyle = "#b3261e";
        ctx.fillRect(t.x + unit.x, t.y + unit.y, 1, 1);
      }
    }
    if (this.before?.column) this.fillBefore(this.before.column); // its picture carries the outlines too
    this.lastLinks = { boxes, unit };
    this.drawConnections(boxes, unit);
  }

  /**
   * CNN Explainer's connections: lines from the unit's input patch on every channel of its input column (at most
   * 64) to the unit itself, over the strip (not in lecture mode, whose left slot is a picture). In the strip's own
   * coordinates, so they scroll with it; redrawn when the strip is resized.
   */
  drawConnections(boxes, unit) {
    const links = this.links;
    if (!links) return;
    links.replaceChildren();
    const column = unit && unit.y !== null ? this.byId.get(unit.node) : null;
    if (!column?.grey || column.vector || document.body.classList.contains("lecture")) return;
    const from = column.node.chain ? this.archById?.get(column.node.chain[0])?.inputs : column.arch?.inputs;
    const origin = this.container.getBoundingClientRect();
    const at = (col, tile, x, y) => {
      const r = col.canvas.getBoundingClientRect();
      const t = tileRect(col.layout, tile);
      return [r.left - origin.left + this.container.scrollLeft + ((t.x + x) / col.canvas.width) * r.width,
        r.top - origin.top + this.container.scrollTop + ((t.y + y) / col.canvas.height) * r.height];
    };
    const [tx, ty] = at(column, unit.channel, unit.x + 0.5, unit.y + 0.5);
    links.setAttribute("width", String(this.container.scrollWidth));
    links.setAttribute("height", String(this.container.scrollHeight));
    for (const id of from ?? []) {
      const source = this.byId.get(id);
      const box = boxes?.[id];
      if (!source?.grey || source.vector || !box) continue;
      for (let c = 0; c < Math.min(source.layout.tiles, 64); c += 1) {
        const cx = (Math.max(0, box.x[0]) + Math.min(source.layout.tile_width - 1, box.x[1]) + 1) / 2;
        const cy = (Math.max(0, box.y[0]) + Math.min(source.layout.tile_height - 1, box.y[1]) + 1) / 2;
        const [sx, sy] = at(source, c, cx, cy);
        links.append(svg("line", { x1: sx, y1: sy, x2: tx, y2: ty, "data-from": `${id}:${c}` }));
      }
    }
  }
}
