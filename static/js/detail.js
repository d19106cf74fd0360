// Operation detail: click a unit (a neuron) and see where it looks (its receptive field, on the input and
// on every earlier layer) and how its number was made, with the real numbers: the window on each input
// channel, the kernel, the products, the sum plus bias, then the activation. One view per operation,
// sharing the grid widget and the animator. Each view checks its sum against the engine's own value.
import { ApiError, api } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { paint, tileRect } from "./featuremaps.js";
import { Grid, formatNumber as fmt } from "./grid.js";
import { TITLES } from "./lessons.js";
import { archNodes, nodeAttributes } from "./models.js";
import { at, fetchNpy } from "./npy.js";
import { fieldOf, perAxis } from "./receptive.js";
import { escapeHtml as esc } from "./text.js";

const fieldCache = new Map();

const ELEMENTWISE = new Set(["relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid",
  "clip", "identity", "dropout", "batch_norm"]);
/** A model's parameter, e.g. ("conv1", "weight"); null when this server does not serve parameters. */
async function fetchParam(modelId, nodeId, name) {
  try {
    return await fetchNpy(`/api/models/${encodeURIComponent(modelId)}/params/${encodeURIComponent(`${nodeId}.${name}`)}.npy`,
      "Fetching the weights…");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

const pairs = (value, axes = 2) => {
  // canonical attributes are per axis ([kh, kw]) or per axis pairs ([[top, bottom], [left, right]])
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value)) return Array.from({ length: axes }, () => value);
  return value;
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "html") node.innerHTML = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

/** A number for a product: negatives in parentheses, so "2·(−0.4)" reads as one product. */
function signed(v) {
  return v < 0 ? `(${fmt(v)})` : fmt(v);
}

function matches(a, b) {
  return Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(a), Math.abs(b));
}

function checkLine(computed, engine) {
  const ok = matches(computed, engine);
  return el("p", {
    class: `badge ${ok ? "ok" : "warn"}`,
    text: ok ? `matches the engine's value ${fmt(engine)} ✓` : `the engine computed ${fmt(engine)} (difference ${fmt(computed - engine)})`,
  });
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
    this.animator?.pause();
    this.context = null;
  }

  /** Show unit `unit` ({node, channel, y, x}) of `column` (a NetworkView column) for a run. */
  /**
   * The prediction's probabilities: softmax over the model's output scores, recomputed from the output's numbers
   * and checked against the API's probabilities (`classes`: the API's top classes).
   */
  async openSoftmax({ model, arch, archById, run, column, classes, scale }) {
    this.scale = scale;
    this.animator?.pause();
    const best = classes[0];
    const unit = { node: column.node.id, channel: best.index, y: null, x: null };
    this.context = { model, arch, archById, run, column, unit };
    this.panel.hidden = false;
    this.title.textContent = `Softmax · from the scores of ${column.node.id} to probabilities`;
    this.drawMap();
    this.body.replaceChildren(el("p", { class: "muted", text: "Fetching the numbers…" }));
    try {
      const view = await this.softmaxView({ inputs: [column.node.id] }, { op: "softmax", shape: column.node.shape }, unit,
        best.probability);
      if (this.context?.unit === unit) this.body.replaceChildren(view);
    } catch (err) {
      this.body.replaceChildren(el("p", { class: "callout", text: err instanceof ApiError ? err.detail : String(err.message ?? err) }));
    }
  }

  async open({ model, arch, archById, run, column, unit, scale, explain }) {
    this.scale = scale;
    this.animator?.pause();
    this.context = { model, arch, archById, run, column, unit };
    this.panel.hidden = false;
    const node = column.node;
    // a column that stands for convolution → batch norm → activation is explained from its convolution
    const head = explain ? run.nodes.find((n) => n.id === explain) : null;
    const explained = head ?? node;
    const archNode = archById.get(explained.id) ?? { op: explained.op, inputs: [] };
    const where = unit.y === null ? `[${unit.channel}]` : `[${unit.channel}, ${unit.y}, ${unit.x}]`;
    const ops = [...(node.chain ?? []).map((id) => archById.get(id)?.op ?? id), node.op].map((op) => TITLES[op] ?? op);
    this.title.textContent = `${ops.join(" → ").replace("Batch normalisation", "BN")} · ${node.id} · unit ${where}`;
    this.drawMap();
    this.body.replaceChildren(el("p", { class: "muted", text: "Fetching the numbers…" }));
    try {
      const value = await this.valueOf(node.id, unit);
      const parts = [el("p", { html: `This neuron's value: <strong class="mono">${fmt(value)}</strong>` })];
      parts.push(await this.fieldBlock(node.id, unit));
      this.body.replaceChildren(...parts);
      const view = await this.opView(archNode, explained, { ...unit, node: explained.id },
        head ? await this.valueOf(explained.id, unit) : value);
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
      paint(this.canvas, column.grey, this.scale);
      this.caption.textContent = `${column.node.shape[0]} numbers, ${column.canvas.width} per row; click one`;
    } else {
      const t = tileRect(layout, unit.channel);
      const tile = new ImageData(t.w, t.h);
      for (let row = 0; row < t.h; row += 1) {
        const start = ((t.y + row) * column.grey.width + t.x) * 4;
        tile.data.set(column.grey.data.subarray(start, start + t.w * 4), row * t.w * 4);
      }
      paint(this.canvas, tile, this.scale);
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
  /** The API's receptive field of a unit: its box in the input per axis (and, if asked, the effective field). */
  unitField(nodeId, unit, effective = false) {
    const { model, run } = this.context;
    const index = [unit.channel, unit.y, unit.x];
    const key = `${model}|${nodeId}|${index}|${effective ? run.run_id : ""}`;
    if (!fieldCache.has(key)) {
      const request = api(`/api/models/${encodeURIComponent(model)}/receptive-field`, {
        json: { node: nodeId, index, effective, run_id: effective ? run.run_id : null },
        label: effective ? "Computing the effective receptive field…" : "Locating the receptive field…",
      }).catch((err) => {
        fieldCache.delete(key);
        throw err;
      });
      fieldCache.set(key, request);
    }
    return fieldCache.get(key);
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
        `${perAxis(field, "stride")} pixels (the effective stride).${answer.note ? ` ${esc(answer.note)}.` : ""}`,
    }));
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
        ` Non-zero gradient in rows ${nonzero[0][0]}…${nonzero[0][1]}, columns ${nonzero[1][0]}…${nonzero[1][1]}.`,
    });
    return el("figure", { class: "erf" }, frame, caption);
  }

  /**
   * Boxes to outline on every earlier layer the unit depends on: per ancestor node id, the range of its own
   * positions the unit depends on, as the API works them out (`layers` of /receptive-field).
   */
  async fieldBoxes(unit) {
    if (!this.context) return null;
    if (unit.y === null) return null;
    const { layers } = await this.unitField(unit.node, unit);
    const boxes = {};
    for (const [id, ranges] of Object.entries(layers ?? {})) {
      if (ranges.length === 2) boxes[id] = { y: ranges[0], x: ranges[1] };
    }
    return boxes;
  }

  // --- numbers ----------------------------------------------------------------------------------------
  async activation(nodeId) {
    const node = this.context.run.nodes.find((n) => n.id === nodeId);
    if (!node) throw new Error(`no node ${nodeId} in this run`);
    return fetchNpy(node.npy_url);
  }

  async valueOf(nodeId, unit) {
    const a = await this.activation(nodeId);
    const index = unit.y === null ? [0, unit.channel] : [0, unit.channel, unit.y, unit.x];
    return at(a, index);
  }

  async opView(archNode, node, unit, value) {
    const op = node.op;
    if (op.startsWith("conv") && !op.startsWith("conv_transpose") && node.shape.length === 3) return this.convView(archNode, node, unit, value);
    if ((op.startsWith("max_pool") || op.startsWith("avg_pool")) && node.shape.length === 3) return this.poolView(archNode, node, unit, value);
    if (op === "linear") return this.linearView(archNode, node, unit, value);
    if (op === "softmax" || op === "spatial_softmax") return this.softmaxView(archNode, node, unit, value);
    if (op === "global_avg_pool") return this.gapView(archNode, node, unit, value);
    if (op === "add" || op === "mul") return this.mergeView(archNode, node, unit, value);
    if (op === "attention_pool") return this.attentionPoolView(archNode, node, unit, value);
    if (ELEMENTWISE.has(op)) return this.elementwiseView(archNode, node, unit, value);
    if (op === "input") return el("p", { class: "small muted", text: "An input number: the image's pixel after preprocessing (scaled and normalised)." });
    return null;
  }

  /** The chain of elementwise nodes after a node (batch norm, then the activation), with this unit's values. */
  async chainAfter(nodeId, unit) {
    const nodes = archNodes(this.context.arch);
    const steps = [];
    let current = nodeId;
    for (let guard = 0; guard < 4; guard += 1) {
      const next = nodes.filter((n) => (n.inputs ?? []).includes(current));
      if (next.length !== 1 || !ELEMENTWISE.has(next[0].op)) break;
      steps.push({ node: next[0], value: await this.valueOf(next[0].id, unit) });
      current = next[0].id;
    }
    return steps;
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
    this.animator = new Animator({ figure, render: (i) => render(i, stage), interval });
    bindAnimatorControls(this.animator, figure);
    queueMicrotask(() => {
      this.animator.setSteps(steps, 0);
      this.animator.play();
    });
    return figure;
  }

  // --- convolution ------------------------------------------------------------------------------------
  async convView(archNode, node, unit, value) {
    const { model } = this.context;
    const attrs = nodeAttributes(archNode);
    const [kh, kw] = pairs(attrs.kernel_size);
    const [sh, sw] = pairs(attrs.stride ?? 1);
    const [dh, dw] = pairs(attrs.dilation ?? 1);
    const padding = pairs(attrs.padding ?? 0);
    const [pt, pl] = padding.map((p) => (Array.isArray(p) ? p[0] : p));
    const groups = attrs.groups ?? 1;
    const inputId = archNode.inputs?.[0] ?? "input";
    const [x, weight, bias, chain] = await Promise.all([
      this.activation(inputId), fetchParam(model, node.id, "weight"),
      attrs.bias === false ? Promise.resolve(null) : fetchParam(model, node.id, "bias"),
      this.chainAfter(node.id, unit),
    ]);
    const [, C, H, W] = x.shape;
    const K = node.shape[0];
    const perGroup = C / groups;
    const group = Math.floor(unit.channel / (K / groups));
    const top = unit.y * sh - pt;
    const left = unit.x * sw - pl;
    const windows = [];
    for (let ci = 0; ci < perGroup; ci += 1) {
      const channel = group * perGroup + ci;
      const values = [];
      for (let i = 0; i < kh; i += 1) {
        const row = [];
        for (let j = 0; j < kw; j += 1) {
          const yy = top + i * dh;
          const xx = left + j * dw;
          row.push(yy < 0 || xx < 0 || yy >= H || xx >= W ? 0 : at(x, [0, channel, yy, xx]));
        }
        values.push(row);
      }
      const kernel = weight ? values.map((row, i) => row.map((_, j) => at(weight, [unit.channel, ci, i, j]))) : null;
      const products = kernel ? values.map((row, i) => row.map((v, j) => v * kernel[i][j])) : null;
      const sum = products ? products.flat().reduce((a, b) => a + b, 0) : null;
      windows.push({ channel, values, kernel, products, sum });
    }
    const intro = `Output ${unit.channel} reads a ${kh}×${kw} window at rows ${top}…${top + (kh - 1) * dh}, columns ` +
      `${left}…${left + (kw - 1) * dw} of ${groups === C && groups > 1 ? "one input channel (a depthwise convolution)" : `each of the ${perGroup} input channels`}` +
      ` of <code>${esc(inputId)}</code>. The same filter is used at every position of this map (weight sharing).`;
    if (!weight) {
      return el("div", {}, el("p", { class: "small", html: intro }),
        el("p", { class: "callout", text: "This server does not serve the model's weights (GET /api/models/{id}/params/{name}.npy), so only the windows are shown." }),
        ...windows.slice(0, 8).map((w) => this.gridBlock(`window on channel ${w.channel}`, w.values)));
    }
    const b = bias ? at(bias, [unit.channel]) : 0;
    if (kh === 1 && kw === 1 && windows.length > 4) {
      // a 1×1 convolution is a fully connected layer over the channels, applied at every position
      const terms = windows.map((w, i) => ({ i: w.channel, xi: w.values[0][0], wi: w.kernel[0][0], p: w.products[0][0] }));
      return el("div", {},
        el("p", { class: "small", html: `A 1×1 convolution: at this position it takes the ${windows.length} channels of ` +
          `<code>${esc(inputId)}</code>, each times one weight of filter ${unit.channel}, and adds them with a bias: a ` +
          "fully connected layer across the channels, repeated at every position with the same weights." }),
        ...this.weightedSum(terms, b, value, "ch"),
        ...(chain.length ? [this.chainBlock(value, chain)] : []));
    }
    const total = windows.reduce((a, w) => a + w.sum, 0);
    const steps = windows.length + 1 + (chain.length ? 1 : 0);
    return this.animatedFigure(steps, (i, stage) => {
      stage.replaceChildren();
      if (i < windows.length) {
        const w = windows[i];
        const running = windows.slice(0, i + 1).reduce((a, v) => a + v.sum, 0);
        stage.append(
          el("p", { class: "small", text: `Input channel ${w.channel} (${i + 1} of ${windows.length})` }),
          el("div", { class: "row" },
            this.gridBlock("window (input numbers)", w.values),
            this.gridBlock("× kernel (weights)", w.kernel),
            this.gridBlock("= products", w.products)),
          el("p", { class: "step-text", html: `sum of the products: <strong>${fmt(w.sum)}</strong> · running total over channels: ` +
            `<span class="result">${fmt(running)}</span>` }));
        if (windows.length > 1) stage.append(this.channelSums(windows, i));
      } else if (i === windows.length) {
        stage.append(
          el("p", { class: "step-text", html: `${windows.length > 1 ? `Σ over ${windows.length} channels` : "Σ products"} ` +
            `${fmt(total)} + bias ${fmt(b)} = <span class="result">${fmt(total + b)}</span>` }),
          checkLine(total + b, value));
        if (windows.length > 1) stage.append(this.channelSums(windows, -1));
      } else {
        stage.append(this.chainBlock(value, chain));
      }
    }, intro);
  }

  channelSums(windows, current) {
    const max = Math.max(1e-9, ...windows.map((w) => Math.abs(w.sum)));
    const strip = el("div", { class: "channel-sums", role: "img", "aria-label": "each input channel's contribution" });
    windows.forEach((w, i) => {
      const bar = el("span", { class: `csum${i === current ? " now" : ""}${i > current && current >= 0 ? " later" : ""}`, title: `channel ${w.channel}: ${fmt(w.sum)}` });
      bar.style.height = `${Math.max(2, (Math.abs(w.sum) / max) * 40)}px`;
      bar.style.background = w.sum >= 0 ? "#d6604d" : "#4393c3";
      strip.append(bar);
    });
    return el("div", {}, el("p", { class: "small muted", text: "each input channel's contribution (red +, blue −):" }), strip);
  }

  chainBlock(value, chain) {
    const lines = [`the convolution's output: <strong>${fmt(value)}</strong>`];
    let previous = value;
    for (const { node, value: v } of chain) {
      const what = node.op === "batch_norm" ? "batch norm: (x − mean) / SD · γ + β" :
        node.op === "relu" ? `ReLU: max(0, ${fmt(previous)})` :
          node.op === "relu6" ? `ReLU6: min(max(0, ${fmt(previous)}), 6)` : `${TITLES[node.op] ?? node.op}(${fmt(previous)})`;
      lines.push(`${what} = <span class="result">${fmt(v)}</span> <span class="muted">(${esc(node.id)})</span>`);
      previous = v;
    }
    return el("div", { class: "step-text", html: lines.join("<br>") });
  }

  gridBlock(caption, values) {
    const box = el("div", { class: "grid-block" });
    const holder = el("div", { class: "grid-scroll" });
    box.append(el("p", { class: "grid-caption", text: caption }), holder);
    const grid = new Grid(holder, { label: caption, compact: values.length * (values[0]?.length ?? 0) > 25 });
    grid.set(values);
    return box;
  }

  // --- pooling ----------------------------------------------------------------------------------------
  async poolView(archNode, node, unit, value) {
    const attrs = nodeAttributes(archNode);
    const [kh, kw] = pairs(attrs.kernel_size);
    const [sh, sw] = pairs(attrs.stride ?? attrs.kernel_size);
    const [dh, dw] = pairs(attrs.dilation ?? 1);
    const padding = pairs(attrs.padding ?? 0);
    const [pt, pl] = padding.map((p) => (Array.isArray(p) ? p[0] : p));
    const inputId = archNode.inputs?.[0] ?? "input";
    const x = await this.activation(inputId);
    const [, , H, W] = x.shape;
    const max = node.op.startsWith("max");
    const top = unit.y * sh - pt;
    const left = unit.x * sw - pl;
    const values = [];
    const inside = [];
    for (let i = 0; i < kh; i += 1) {
      const row = [];
      for (let j = 0; j < kw; j += 1) {
        const yy = top + i * dh;
        const xx = left + j * dw;
        const ok = yy >= 0 && xx >= 0 && yy < H && xx < W;
        row.push(ok ? at(x, [0, unit.channel, yy, xx]) : max ? null : 0);
        if (ok) inside.push(at(x, [0, unit.channel, yy, xx]));
      }
      values.push(row);
    }
    const cells = values.flatMap((row, i) => row.map((v, j) => ({ i, j, v })));
    const divisor = attrs.count_include_pad === false ? inside.length : kh * kw;
    const final = max ? Math.max(...inside) : inside.reduce((a, b) => a + b, 0) / divisor;
    const intro = `Pooling looks at one channel at a time: a ${kh}×${kw} window of channel ${unit.channel} of ` +
      `<code>${esc(inputId)}</code>, moving ${sh} at a time, so the map shrinks (down-sampling). No weights to learn.`;
    // one step per number in the window (the running max or sum), then the result
    return this.animatedFigure(cells.length + 1, (step, stage) => {
      const block = this.gridBlock(`window on channel ${unit.channel}`, values.map((r) => r.map((v) => v ?? NaN)));
      const grid = block.querySelector(".grid");
      const seen = cells.slice(0, Math.min(step + 1, cells.length)).filter((c) => c.v !== null);
      cells.slice(0, step + 1).forEach((c, k) => {
        grid.children[c.i * kw + c.j]?.classList.add(k === step ? "current" : "done");
      });
      let text;
      if (step < cells.length) {
        const so = seen.map((c) => c.v);
        text = max
          ? `largest so far: max(${so.map(fmt).join(", ")}) = <strong>${fmt(Math.max(...so))}</strong>`
          : `sum so far: ${so.map(fmt).join(" + ")} = <strong>${fmt(so.reduce((a, b) => a + b, 0))}</strong>`;
      } else {
        if (max) {
          const best = cells.find((c) => c.v === final);
          if (best) grid.children[best.i * kw + best.j]?.classList.add("argmax");
        }
        text = max
          ? `max of the window = <span class="result">${fmt(final)}</span>`
          : `(${inside.map(fmt).join(" + ")}) / ${divisor} = <span class="result">${fmt(final)}</span>`;
      }
      stage.replaceChildren(block, el("p", { class: "step-text", html: text }));
      if (step === cells.length) stage.append(checkLine(final, value));
    }, intro);
  }

  // --- fully connected --------------------------------------------------------------------------------
  async linearView(archNode, node, unit, value) {
    const { model } = this.context;
    const inputId = archNode.inputs?.[0];
    const [x, weight, bias] = await Promise.all([this.activation(inputId), fetchParam(model, node.id, "weight"),
      nodeAttributes(archNode).bias === false ? Promise.resolve(null) : fetchParam(model, node.id, "bias")]);
    const n = x.shape[1];
    const intro = `A fully connected neuron: all ${n} numbers of <code>${esc(inputId)}</code>, each times its own weight, summed, plus a bias.`;
    if (!weight) {
      return el("div", {}, el("p", { class: "small", html: intro }),
        el("p", { class: "callout", text: "This server does not serve the model's weights (GET /api/models/{id}/params/{name}.npy), so the products cannot be shown." }));
    }
    const terms = [];
    for (let i = 0; i < n; i += 1) {
      const xi = x.data[i];
      const wi = at(weight, [unit.channel, i]);
      terms.push({ i, xi, wi, p: xi * wi });
    }
    const b = bias ? at(bias, [unit.channel]) : 0;
    return el("div", {}, el("p", { class: "small", html: intro }), ...this.weightedSum(terms, b, value, "x"));
  }

  /** A weighted sum shown by its largest products (red +, blue −), then the total, the bias and the check. */
  weightedSum(terms, b, value, name) {
    const total = terms.reduce((a, t) => a + t.p, 0);
    const ranked = [...terms].sort((a, c) => Math.abs(c.p) - Math.abs(a.p)).slice(0, 12);
    const max = Math.max(1e-9, ...ranked.map((t) => Math.abs(t.p)));
    const list = el("div", { class: "bars" }, ...ranked.map((t) => {
      const row = el("div", { class: "bar-row" },
        el("span", { class: "bar-label mono", text: `${name}[${t.i}]·w = ${signed(t.xi)}·${signed(t.wi)}` }),
        el("span", { class: "bar-track" }, el("span", { class: "bar-fill" })),
        el("span", { class: "bar-value", text: fmt(t.p) }));
      const fill = row.querySelector(".bar-fill");
      fill.style.width = `${(Math.abs(t.p) / max) * 100}%`;
      fill.style.background = t.p >= 0 ? "#d6604d" : "#4393c3";
      return row;
    }));
    return [
      el("p", { class: "small muted", text: `the ${ranked.length} largest of the ${terms.length} products (red +, blue −):` }), list,
      el("p", { class: "step-text", html: `Σ of all ${terms.length} products ${fmt(total)} + bias ${fmt(b)} = <span class="result">${fmt(total + b)}</span>` }),
      checkLine(total + b, value),
    ];
  }

  // --- softmax ----------------------------------------------------------------------------------------
  async softmaxView(archNode, node, unit, value) {
    const inputId = archNode.inputs?.[0];
    const z = await this.activation(inputId);
    const scores = Array.from(z.data);
    const top = Math.max(...scores);
    const exps = scores.map((s) => Math.exp(s - top));
    const total = exps.reduce((a, b) => a + b, 0);
    const index = unit.y === null ? unit.channel : unit.y * node.shape[2] + unit.x;
    const mine = exps[index] / total;
    const what = node.op === "spatial_softmax" ? "position" : "class";
    const labels = this.context.arch?.labels ?? [];
    const order = [...scores.keys()].sort((a, b) => scores[b] - scores[a]).slice(0, 10);
    const table = el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { text: what }), el("th", { class: "num", text: "score z" }),
        el("th", { class: "num", text: "e^(z − max)" }), el("th", { class: "num", text: "probability" }))),
      el("tbody", {}, ...order.map((i) => el("tr", { class: i === index ? "selected" : "" },
        el("td", { text: what === "class" ? labels[i] ?? String(i) : String(i) }), el("td", { class: "num", text: fmt(scores[i]) }),
        el("td", { class: "num", text: fmt(exps[i]) }), el("td", { class: "num", text: fmt(exps[i] / total) })))));
    return el("div", {},
      el("p", { class: "small", text: `Softmax: e to the power of each score (minus the largest, ${fmt(top)}, for stability), divided by their sum ${fmt(total)}: positive numbers that add up to 1.` }),
      table,
      el("p", { class: "step-text", html: `${what} ${index}${what === "class" && labels[index] ? ` (${esc(labels[index])})` : ""}: ` +
        `${fmt(exps[index])} / ${fmt(total)} = <span class="result">${fmt(mine)}</span>` }),
      checkLine(mine, value));
  }

  // --- global average pooling, merges, attention pooling, elementwise ----------------------------------
  async gapView(archNode, node, unit, value) {
    const inputId = archNode.inputs?.[0];
    const x = await this.activation(inputId);
    const [, , H, W] = x.shape;
    let sum = 0;
    for (let y = 0; y < H; y += 1) for (let xx = 0; xx < W; xx += 1) sum += at(x, [0, unit.channel, y, xx]);
    return el("div", {},
      el("p", { class: "step-text", html: `mean of the ${H}×${W} map ${unit.channel} of ${esc(inputId)}: ${fmt(sum)} / ${H * W} = <span class="result">${fmt(sum / (H * W))}</span>` }),
      checkLine(sum / (H * W), value));
  }

  async mergeView(archNode, node, unit, value) {
    const values = await Promise.all((archNode.inputs ?? []).map((id) => this.valueOf(id, unit).then((v) => ({ id, v }))));
    const add = node.op === "add";
    const result = values.reduce((a, { v }) => (add ? a + v : a * v), add ? 0 : 1);
    return el("div", {},
      el("p", { class: "step-text", html: `${values.map(({ id, v }) => `${fmt(v)} <span class="muted">(${esc(id)})</span>`).join(add ? " + " : " × ")} = <span class="result">${fmt(result)}</span>` }),
      checkLine(result, value));
  }

  async attentionPoolView(archNode, node, unit, value) {
    const [featureId, weightId] = archNode.inputs ?? [];
    const [f, w] = await Promise.all([this.activation(featureId), this.activation(weightId)]);
    const [, , H, W] = f.shape;
    let sum = 0;
    const weights = [];
    for (let y = 0; y < H; y += 1) {
      const row = [];
      for (let x = 0; x < W; x += 1) {
        const a = at(w, [0, 0, y, x]);
        row.push(a);
        sum += a * at(f, [0, unit.channel, y, x]);
      }
      weights.push(row);
    }
    return el("div", {},
      el("p", { class: "small", text: `Attention pooling: feature ${unit.channel} of ${featureId} is summed over its ${H}×${W} positions, each weighted by the attention map (${weightId}, weights adding up to 1): a weighted sum that shows which positions drove the decision.` }),
      this.gridBlock("attention weights", weights),
      el("p", { class: "step-text", html: `Σ weight × feature = <span class="result">${fmt(sum)}</span>` }),
      checkLine(sum, value));
  }

  async elementwiseView(archNode, node, unit, value) {
    const inputId = archNode.inputs?.[0];
    const input = await this.valueOf(inputId, unit);
    const formula = {
      relu: `max(0, ${fmt(input)})`, relu6: `min(max(0, ${fmt(input)}), 6)`, identity: fmt(input), dropout: `${fmt(input)} (inference: unchanged)`,
      batch_norm: `(${fmt(input)} − running mean) / √(running var + ε) · γ + β`,
    }[node.op] ?? `${node.op}(${fmt(input)})`;
    return el("p", { class: "step-text", html: `${formula} = <span class="result">${fmt(value)}</span> <span class="muted">(input from ${esc(inputId)})</span>` });
  }
}
