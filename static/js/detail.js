// Operation detail: click a unit (a neuron) and see where it looks (its receptive field, on the input and
// on every earlier layer) and how its number was made, with the real numbers. The API's explanation of the unit
// names its family; the view for that family (static/js/explain/) draws it, sharing the grid widget and the
// animator. Each view checks its sum against the engine's own value.
import { ApiError, api } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { el, esc, fmt } from "./explain/common.js";
import { VIEWS } from "./explain/index.js";
import { paint, tileRect } from "./featuremaps.js";
import { columnTitles } from "./lessons.js";
import { at, fetchNpy } from "./npy.js";
import { GATE_EXPLANATION, fieldOf, gateNote, perAxis } from "./receptive.js";

// Receptive fields asked of the API, by model, node, unit (and run, for effective fields): the most recently
// used FIELD_CACHE_LIMIT of them (a Map keeps insertion order: the least recently used comes first).
export const FIELD_CACHE_LIMIT = 64;
const fieldCache = new Map();

/** The cached promise for `key`, else `request()`'s (a failure is not kept); oldest entries beyond the limit go. */
function cachedField(key, request) {
  let promise = fieldCache.get(key);
  if (promise) {
    fieldCache.delete(key); // set again below: now the most recently used
  } else {
    promise = request().catch((err) => {
      if (fieldCache.get(key) === promise) fieldCache.delete(key);
      throw err;
    });
  }
  fieldCache.set(key, promise);
  while (fieldCache.size > FIELD_CACHE_LIMIT) fieldCache.delete(fieldCache.keys().next().value);
  return promise;
}

/** "1 pixel", "2 pixels", "2×1 pixels" (a stride per axis, as perAxis writes it). */
function pixels(amount) {
  return `${amount} ${amount === "1" ? "pixel" : "pixels"}`;
}

/** The API's notes are clauses ("the box extends into the padding …"): as a sentence of their own. */
function sentence(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export class DetailView {
  constructor({ panel, body, canvas, caption, title, onUnit }) {
    Object.assign(this, { panel, body, canvas, caption, title, onUnit });
    this.scale = "viridis";
    this.context = null;
    canvas.addEventListener("click", (event) => this.pickUnit(event));
    canvas.addEventListener("keydown", (event) => this.moveUnit(event));
  }

  setScale(name) {
    this.scale = name;
    if (this.context) this.drawMap();
  }

  close() {
    this.panel.hidden = true;
    this.disposeAnimator();
    this.context = null;
  }

  /** The step animation of the explanation shown, if any, is being replaced or closed: stop it for good. */
  disposeAnimator() {
    this.animator?.dispose();
    this.animator = null;
    // and what its view handed over (`own`: the convolution's kernel slide)
    for (const owned of this.owned ?? []) owned.dispose();
    this.owned = [];
  }

  /**
   * The prediction's probabilities: softmax over the model's output scores, worked out by the engine
   * (`classes`: the API's top classes; the best one is explained).
   */
  async openSoftmax({ model, arch, archById, run, column, classes, scale }) {
    this.scale = scale;
    this.disposeAnimator();
    const best = classes[0];
    const unit = { node: column.node.id, channel: best.index, y: null, x: null };
    this.context = { model, arch, archById, run, column, unit };
    this.panel.hidden = false;
    this.title.textContent = `Softmax · from the scores of ${column.node.id} to probabilities`;
    this.drawMap();
    this.body.replaceChildren(el("p", { class: "muted", text: "Fetching the numbers…" }));
    try {
      const explanation = await this.explanation(column.node.id, unit, { softmax: true });
      if (this.context?.unit === unit) this.body.replaceChildren(this.view(explanation, unit));
    } catch (err) {
      this.body.replaceChildren(el("p", { class: "callout", text: err instanceof ApiError ? err.detail : String(err.message ?? err) }));
    }
  }

  /** Show unit `unit` ({node, channel, y, x}) of `column` (a NetworkView column) for a run. */
  async open({ model, arch, archById, run, column, unit, scale, explain }) {
    this.scale = scale;
    this.disposeAnimator();
    this.context = { model, arch, archById, run, column, unit };
    this.panel.hidden = false;
    const node = column.node;
    // a column that stands for convolution → batch norm → activation is explained from its convolution
    const head = explain ? run.nodes.find((n) => n.id === explain) : null;
    const explained = head ?? node;
    const where = unit.y === null ? `[${unit.channel}]` : `[${unit.channel}, ${unit.y}, ${unit.x}]`;
    const ops = columnTitles(node, archById);
    this.title.textContent = `${ops.join(" → ").replace("Batch normalisation", "BN")} · ${node.id} · unit ${where}`;
    this.drawMap();
    this.body.replaceChildren(el("p", { class: "muted", text: "Fetching the numbers…" }));
    try {
      const value = await this.valueOf(node.id, unit);
      const parts = [el("p", { html: `This neuron's value: <strong class="mono">${fmt(value)}</strong>` })];
      parts.push(await this.fieldBlock(node.id, unit));
      this.body.replaceChildren(...parts);
      const view = await this.opView(explained, unit);
      if (this.context?.unit !== unit) return;
      if (view) this.body.append(view);
    } catch (err) {
      this.body.replaceChildren(el("p", { class: "callout", text: err instanceof ApiError ? err.detail : String(err.message ?? err) }));
    }
  }

  // --- the selected map, large ----------------------------------------------------------------------
  drawMap() {
    const { column, unit } = this.context;
    if (!column.grey) return;
    const layout = column.layout;
    if (column.vector) {
      paint(this.canvas, column.grey, this.scale, null, column.ranges); // a signed scale: centred on zero
      this.caption.textContent = `${column.node.shape[0]} numbers, ${column.canvas.width} per row; click one`;
    } else {
      const t = tileRect(layout, unit.channel);
      const tile = new ImageData(t.w, t.h);
      for (let row = 0; row < t.h; row += 1) {
        const start = ((t.y + row) * column.grey.width + t.x) * 4;
        tile.data.set(column.grey.data.subarray(start, start + t.w * 4), row * t.w * 4);
      }
      paint(this.canvas, tile, this.scale, null, column.ranges && [column.ranges[unit.channel]]);
      this.caption.textContent = `map ${unit.channel} of ${layout.tiles} (${t.h} × ${t.w}); click a neuron, or use the arrow keys ` +
        "(Page Up / Page Down: another map)";
    }
    const ctx = this.canvas.getContext("2d");
    if (unit.y !== null) {
      ctx.strokeStyle = "#ff2d2d";
      ctx.lineWidth = Math.max(0.25, this.canvas.width / 120);
      ctx.strokeRect(unit.x, unit.y, 1, 1);
    } else {
      const w = this.canvas.width;
      ctx.strokeStyle = "#ff2d2d";
      ctx.lineWidth = 0.3;
      ctx.strokeRect(unit.channel % w, Math.floor(unit.channel / w), 1, 1);
    }
  }

  pickUnit(event) {
    if (!this.context) return;
    const rect = this.canvas.getBoundingClientRect();
    const px = Math.floor(((event.clientX - rect.left) / rect.width) * this.canvas.width);
    const py = Math.floor(((event.clientY - rect.top) / rect.height) * this.canvas.height);
    const { column, unit } = this.context;
    if (column.vector) {
      const index = py * this.canvas.width + px;
      if (index < column.node.shape[0]) this.onUnit({ node: column.node.id, channel: index, y: null, x: null });
    } else {
      this.onUnit({ node: column.node.id, channel: unit.channel, y: py, x: px });
    }
  }

  moveUnit(event) {
    if (!this.context) return;
    const { column, unit } = this.context;
    if ((event.key === "PageDown" || event.key === "PageUp") && !column.vector) {
      // another map of the same layer, same position
      event.preventDefault();
      const channel = (unit.channel + (event.key === "PageDown" ? 1 : -1) + column.layout.tiles) % column.layout.tiles;
      this.onUnit({ node: column.node.id, channel, y: unit.y ?? 0, x: unit.x ?? 0 });
      return;
    }
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    if (column.vector) {
      const n = column.node.shape[0];
      const w = this.canvas.width;
      const next = Math.max(0, Math.min(n - 1, unit.channel + move[0] * w + move[1]));
      this.onUnit({ node: column.node.id, channel: next, y: null, x: null });
      return;
    }
    const y = Math.max(0, Math.min(column.layout.tile_height - 1, (unit.y ?? 0) + move[0]));
    const x = Math.max(0, Math.min(column.layout.tile_width - 1, (unit.x ?? 0) + move[1]));
    this.onUnit({ node: column.node.id, channel: unit.channel, y, x });
  }

  // --- receptive field --------------------------------------------------------------------------------
  /**
   * The API's receptive field of a unit: its box in the input per axis (and, if asked, the effective field), for the
   * model and run of the explanation shown, or of `context` ({ model, run }).
   */
  unitField(nodeId, unit, effective = false, { model, run } = this.context) {
    const index = [unit.channel, unit.y, unit.x];
    const key = `${model}|${nodeId}|${index}|${effective ? run.run_id : ""}`;
    return cachedField(key, () => api(`/api/models/${encodeURIComponent(model)}/receptive-field`, {
      json: { node: nodeId, index, effective, run_id: effective ? run.run_id : null },
      label: effective ? "Computing the effective receptive field…" : "Locating the receptive field…",
    }));
  }

  async fieldBlock(nodeId, unit) {
    const { archById, arch } = this.context;
    const axes = arch?.architecture?.spatial_axes ?? ["H", "W"];
    const field = fieldOf(archById, nodeId, axes.length);
    if (unit.y === null || field.status !== "local") {
      const reason = field.status === "global"
        ? "This neuron sees the whole input: every input pixel can change it (a global receptive field)."
        : field.reason || "";
      return el("p", { class: "small", text: reason });
    }
    const answer = await this.unitField(nodeId, unit);
    const [bh, bw] = answer.box;
    const block = el("div", { class: "field-block" });
    block.append(el("p", {
      class: "small",
      html: `<strong>Receptive field:</strong> this neuron sees only a ${field.axes.map((a) => a.size).join("×")} patch ` +
        `of the input, rows ${bh.start}…${bh.end} and columns ${bw.start}…${bw.end} (outlined in orange on every ` +
        "earlier layer). Its neighbours see patches shifted by " +
        `${pixels(perAxis(field, "stride"))} (the effective stride).${answer.note ? ` ${esc(sentence(answer.note))}.` : ""}`,
    }));
    const gate = gateNote(field, archById);
    if (gate) {
      // the API's note (above) says it in words; the badge names the gate at a glance
      block.append(el("p", { class: "small gate-note" },
        el("span", { class: "badge warn gate-badge", text: gate, title: GATE_EXPLANATION })));
    }
    const button = el("button", { type: "button", class: "secondary small-button", text: "Which pixels actually move it? (effective receptive field)" });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const full = await this.unitField(nodeId, unit, true);
        button.replaceWith(this.effectiveFigure(full));
      } catch (err) {
        button.replaceWith(el("p", { class: "callout", text: err instanceof ApiError ? err.detail : String(err) }));
      }
    });
    block.append(button);
    return block;
  }

  /** The effective receptive field (|d unit / d input|) with the theoretical box drawn on it. */
  effectiveFigure(answer) {
    const effective = answer.effective;
    const [H, W] = effective.shape;
    const [bh, bw] = answer.box;
    const frame = el("div", { class: "erf-frame" });
    const image = el("img", { src: effective.png, alt: "effective receptive field: bright pixels move this neuron most" });
    const box = el("div", { class: "erf-box", title: "the theoretical receptive field" });
    box.style.left = `${(bw.clipped_start / W) * 100}%`;
    box.style.top = `${(bh.clipped_start / H) * 100}%`;
    box.style.width = `${((bw.clipped_end - bw.clipped_start + 1) / W) * 100}%`;
    box.style.height = `${((bh.clipped_end - bh.clipped_start + 1) / H) * 100}%`;
    frame.append(image, box);
    const nonzero = effective.nonzero_box;
    if (!nonzero) {
      return el("p", { class: "callout info", text: "No input pixel moves this neuron here: its gradient is zero " +
        "everywhere (typically a neuron that ReLU has set to zero, which stays zero under small changes)." });
    }
    const caption = el("p", {
      class: "small muted",
      text: "Brightness: how much each input pixel changes this neuron (|gradient|, on this image); orange: the " +
        "theoretical field. The influence fades towards the edges: the effective field is smaller than r." +
        ` Non-zero gradient in rows ${nonzero[0][0]}…${nonzero[0][1]}, columns ${nonzero[1][0]}…${nonzero[1][1]}.` +
        (answer.receptive_field?.global_modulation
          ? " Through the global gate (squeeze-excite), pixels outside the box move it too." : ""),
    });
    return el("figure", { class: "erf" }, frame, caption);
  }

  /**
   * Boxes to outline on every earlier layer the unit depends on: per ancestor node id, the range of its own
   * positions the unit depends on, as the API works them out (`layers` of /receptive-field). `context`: the model,
   * its architecture and the run ({ model, arch, archById, run }), by default the explanation's.
   */
  async fieldBoxes(unit, context = this.context) {
    if (!context || unit.y === null) return null;
    const axes = context.arch?.architecture?.spatial_axes ?? ["H", "W"];
    if (fieldOf(context.archById, unit.node, axes.length).status !== "local") return null;
    const { layers } = await this.unitField(unit.node, unit, false, context);
    const boxes = {};
    for (const [id, ranges] of Object.entries(layers ?? {})) {
      if (ranges.length === 2) boxes[id] = { y: ranges[0], x: ranges[1] };
    }
    return boxes;
  }

  // --- numbers ----------------------------------------------------------------------------------------
  // Every number below comes from the engine: the activations (.npy) for the neuron's own value, and
  // GET /api/runs/{run}/nodes/{node}/units/{index} for how it was made (windows, weights, products, sums).
  async activation(nodeId, run = this.context.run) {
    const node = run.nodes.find((n) => n.id === nodeId);
    if (!node) throw new Error(`no node ${nodeId} in this run`);
    return fetchNpy(node.npy_url);
  }

  async valueOf(nodeId, unit) {
    const a = await this.activation(nodeId);
    const index = unit.y === null ? [0, unit.channel] : [0, unit.channel, unit.y, unit.x];
    return at(a, index);
  }

  /** The engine's arithmetic behind one unit; `softmax`: the softmax over this node's class scores instead. */
  explanation(nodeId, unit, { softmax = false } = {}) {
    const { run } = this.context;
    const index = unit.y === null ? [unit.channel] : [unit.channel, unit.y, unit.x];
    // a sequence node's maps are its activation; the API turns a position into the (step, unit) it holds
    const sequence = !softmax && this.context.archById.get(nodeId)?.sequence;
    const query = softmax ? "?softmax=true" : sequence ? "?position=true" : "";
    const path = `/api/runs/${encodeURIComponent(run.run_id)}/nodes/${encodeURIComponent(nodeId)}/units/` +
      `${index.join(",")}${query}`;
    return api(path, { label: "Fetching the numbers…" });
  }

  async opView(node, unit) {
    if (node.op === "input") return el("p", { class: "small muted", text: "An input number: the image's pixel after preprocessing (scaled and normalised)." });
    if (!this.context.archById.get(node.id)?.explainable) return null;
    const explanation = await this.explanation(node.id, unit);
    // another unit chosen meanwhile: build nothing (a view's animator would play on a figure never shown)
    return this.context?.unit === unit ? this.view(explanation, unit) : null;
  }

  /** The view of an explanation's family, or a note when this page has none for it. */
  view(e, unit) {
    const view = VIEWS[e.family];
    if (!view) return el("p", { class: "small muted", text: `This page cannot draw a ${e.family} explanation yet.` });
    const labels = this.context.arch?.labels ?? [];
    const { run } = this.context;
    const shown = view(e, { unit, labels, animate: (steps, render, intro) => this.animatedFigure(steps, render, intro),
      activation: (id) => this.activation(id, run), scale: this.scale,
      own: (thing) => (this.owned ??= []).push(thing) });
    shown.dataset.family = e.family;
    return shown;
  }

  animatedFigure(steps, render, intro) {
    const figure = el("div", { class: "op-figure" });
    const controls = el("div", { class: "button-row" },
      el("button", { type: "button", "data-action": "first", "aria-label": "First step", text: "« First" }),
      el("button", { type: "button", "data-action": "prev", "aria-label": "Previous step", text: "◀ Prev" }),
      el("button", { type: "button", "data-action": "play", "aria-pressed": "false", text: "▶ Play" }),
      el("button", { type: "button", "data-action": "next", "aria-label": "Next step", text: "Next ▶" }),
      el("button", { type: "button", "data-action": "last", "aria-label": "Last step", text: "Last »" }),
      el("span", { "data-role": "step-label", class: "small muted" }));
    const stage = el("div", { class: "op-stage" });
    figure.append(el("p", { class: "small", html: intro }), controls, stage);
    // long explanations (a 1×1 convolution over 96 channels) play faster, so the whole story takes seconds
    const interval = Math.max(250, Math.min(1100, 9000 / steps));
    this.animator?.dispose(); // the previous step animator only: what the view owns stays with this explanation
    this.animator = new Animator({ figure, render: (i) => render(i, stage), interval });
    bindAnimatorControls(this.animator, figure);
    queueMicrotask(() => {
      this.animator.setSteps(steps, 0);
      this.animator.play();
    });
    return figure;
  }
}
