// Operation detail: click a unit (a neuron) and see where it looks (its receptive field, on the input and
// on every earlier layer) and how its number was made, with the real numbers: the window on each input
// channel, the kernel, the products, the sum plus bias, then the activation. One view per operation,
// sharing the grid widget and the animator. Each view checks its sum against the engine's own value.
import { ApiError, api } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { paint, tileRect } from "./featuremaps.js";
import { Grid, formatNumber as fmt } from "./grid.js";
import { TITLES } from "./lessons.js";
import { at, fetchNpy } from "./npy.js";
import { fieldOf, perAxis } from "./receptive.js";
import { escapeHtml as esc } from "./text.js";

const fieldCache = new Map();

const ELEMENTWISE = new Set(["relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid",
  "clip", "identity", "dropout", "batch_norm"]);
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

/** "1 row", "2 rows". */
function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
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
   * The prediction's probabilities: softmax over the model's output scores, worked out by the engine
   * (`classes`: the API's top classes; the best one is explained).
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
      const view = this.softmaxView(await this.explanation(column.node.id, unit, { softmax: true }));
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
    const axes = this.context.arch?.architecture?.spatial_axes ?? ["H", "W"];
    if (fieldOf(this.context.archById, unit.node, axes.length).status !== "local") return null;
    const { layers } = await this.unitField(unit.node, unit);
    const boxes = {};
    for (const [id, ranges] of Object.entries(layers ?? {})) {
      if (ranges.length === 2) boxes[id] = { y: ranges[0], x: ranges[1] };
    }
    return boxes;
  }

  // --- numbers ----------------------------------------------------------------------------------------
  // Every number below comes from the engine: the activations (.npy) for the neuron's own value, and
  // GET /api/runs/{run}/nodes/{node}/units/{index} for how it was made (windows, weights, products, sums).
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

  /** The engine's arithmetic behind one unit; `softmax`: the softmax over this node's class scores instead. */
  explanation(nodeId, unit, { softmax = false } = {}) {
    const { run } = this.context;
    const index = unit.y === null ? [unit.channel] : [unit.channel, unit.y, unit.x];
    const path = `/api/runs/${encodeURIComponent(run.run_id)}/nodes/${encodeURIComponent(nodeId)}/units/` +
      `${index.join(",")}${softmax ? "?softmax=true" : ""}`;
    return api(path, { label: "Fetching the numbers…" });
  }

  async opView(node, unit) {
    const op = node.op;
    if (op === "input") return el("p", { class: "small muted", text: "An input number: the image's pixel after preprocessing (scaled and normalised)." });
    const views = {
      conv2d: "convView", conv_transpose2d: "convTransposeView", max_pool2d: "poolView", avg_pool2d: "poolView", linear: "linearView", softmax: "softmaxView",
      spatial_softmax: "softmaxView", global_avg_pool: "gapView", add: "mergeView", mul: "mergeView",
      attention_pool: "attentionPoolView", pad: "padView", upsample: "upsampleView",
    };
    const view = views[op] ?? (ELEMENTWISE.has(op) ? "elementwiseView" : null);
    if (!view) return null;
    return this[view](await this.explanation(node.id, unit), unit);
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

  /** What a bounded explanation left out, in words (nothing when it listed everything). */
  omittedNote(e) {
    return e.omitted?.note ? el("p", { class: "small muted", text: `Only part is listed: ${e.omitted.note}.` }) : null;
  }

  // --- convolution ------------------------------------------------------------------------------------
  convView(e, unit) {
    const [kh, kw] = e.kernel_size;
    const { rows, cols, channels: windows, chain } = e;
    const depthwise = e.groups > 1 && e.channels_in_group === 1;
    const intro = `Output ${unit.channel} reads a ${kh}×${kw} window at rows ${rows[0]}…${rows.at(-1)}, columns ` +
      `${cols[0]}…${cols.at(-1)} of ${depthwise ? "one input channel (a depthwise convolution)" : `each of the ${e.channels_in_group} input channels`}` +
      ` of <code>${esc(e.input)}</code>. The same filter is used at every position of this map (weight sharing).` +
      (e.omitted?.note ? ` Only part is listed: ${esc(e.omitted.note)}.` : "");
    if (kh === 1 && kw === 1 && e.channels_in_group > 4) {
      // a 1×1 convolution is a fully connected layer over the channels, applied at every position
      const terms = windows.map((w) => ({ i: w.channel, xi: w.values[0][0], wi: w.kernel[0][0], p: w.products[0][0] }));
      return el("div", {},
        el("p", { class: "small", html: `A 1×1 convolution: at this position it takes the ${e.channels_in_group} channels of ` +
          `<code>${esc(e.input)}</code>, each times one weight of filter ${unit.channel}, and adds them with a bias: a ` +
          "fully connected layer across the channels, repeated at every position with the same weights." }),
        ...this.weightedSum(terms, e, e.channels_in_group, "ch"),
        ...(chain.length ? [this.chainBlock(e.engine_value, chain)] : []));
    }
    const rest = e.omitted?.count ? ` + the other ${e.omitted.count} channels ${signed(e.omitted.sum)}` : "";
    const steps = windows.length + 1 + (chain.length ? 1 : 0);
    return this.animatedFigure(steps, (i, stage) => {
      stage.replaceChildren();
      if (i < windows.length) {
        const w = windows[i];
        stage.append(
          el("p", { class: "small", text: `Input channel ${w.channel} (${i + 1} of ${windows.length})` }),
          el("div", { class: "row" },
            this.gridBlock("window (input numbers)", w.values),
            this.gridBlock("× kernel (weights)", w.kernel),
            this.gridBlock("= products", w.products)),
          el("p", { class: "step-text", html: `sum of the products: <strong>${fmt(w.sum)}</strong> · running total over channels: ` +
            `<span class="result">${fmt(w.running)}</span>` }));
        if (windows.length > 1) stage.append(this.channelSums(windows, i));
      } else if (i === windows.length) {
        const sums = windows.length > 1 ? `Σ over ${rest ? `the ${windows.length} channels listed ${fmt(windows.at(-1).running)}${rest} = ` : `${windows.length} channels `}` : "Σ products ";
        stage.append(
          el("p", { class: "step-text", html: `${sums}${fmt(e.total)} + bias ${fmt(e.bias)} = <span class="result">${fmt(e.result)}</span>` }),
          checkLine(e.result, e.engine_value));
        if (windows.length > 1) stage.append(this.channelSums(windows, -1));
      } else {
        stage.append(this.chainBlock(e.engine_value, chain));
      }
    }, intro);
  }

  // --- transposed convolution ----------------------------------------------------------------------------
  /**
   * A transposed convolution unit: per axis the (input position, kernel offset) pairs that land on it (the API's
   * rules), then the terms input × weight of each input channel of its group, their sum, the bias and the check.
   */
  convTransposeView(e, unit) {
    const [kh, kw] = e.kernel_size;
    const [sh, sw] = e.stride;
    const [H, W] = e.spatial_shape;
    const padded = e.output_padding.some((n) => n > 0) ? `, output_padding ${e.output_padding.join("×")}` : "";
    const dilated = e.dilation.some((n) => n > 1) ? `, dilation ${e.dilation.join("×")}` : "";
    const [[top, bottom], [left, right]] = e.padding;
    const cropped = top || bottom || left || right
      ? ` Its padding crops the output instead: ${count(top, "row")} above, ${bottom} below, ${count(left, "column")} ` +
        `left, ${right} right.` : "";
    const intro = `A transposed convolution (${kh}×${kw} kernel, stride ${sh}×${sw}${dilated}${padded}) runs a ` +
      `convolution backwards: each number of <code>${esc(e.input)}</code> (${H}×${W}) is multiplied by the whole ` +
      `kernel and added onto the output ${sh}×${sw} apart, so the map grows. Output ${unit.channel} collects what ` +
      `lands on it from ${e.channels_in_group === 1 ? "one input channel" : `each of the ${e.channels_in_group} input channels`}` +
      `${e.groups > 1 ? ` of group ${e.group}` : ""}, each input number times the kernel weight that meets it there.` +
      cropped +
      (e.omitted?.note ? ` Only part is listed: ${esc(e.omitted.note)}.` : "");
    const cell = (text, cls = "num") => el("td", { class: cls, text });
    const rows = e.channel_terms.flatMap((c) => [
      ...c.terms.map((t) => el("tr", { "data-role": "term" },
        cell(String(c.channel), ""), cell(`(${t.row}, ${t.col})`, ""), cell(`(${t.kernel_row}, ${t.kernel_col})`, ""),
        cell(fmt(t.input)), cell(fmt(t.weight)), cell(fmt(t.product)))),
      el("tr", { "data-role": "channel-sum", class: "muted" },
        el("td", { colspan: "5", text: `channel ${c.channel}: Σ of its ${count(c.terms.length, "product")} (right); running total over channels so far ${fmt(c.running)}` }),
        cell(fmt(c.sum))),
    ]);
    const table = el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { text: "channel" }), el("th", { text: "input (row, column)" }),
        el("th", { text: "kernel (row, column)" }), el("th", { class: "num", text: "input" }),
        el("th", { class: "num", text: "weight" }), el("th", { class: "num", text: "input × weight" }))),
      el("tbody", {}, ...rows));
    const rest = e.omitted?.count ? ` + the other ${e.omitted.count} channels ${signed(e.omitted.sum)}` : "";
    const listed = e.channel_terms.length;
    const sums = rest ? `Σ over the ${listed} channels listed ${fmt(e.channel_terms.at(-1)?.running ?? 0)}${rest} = `
      : `Σ over ${count(listed, "channel")} = `;
    return el("div", { "data-kind": "conv_transpose2d" },
      el("p", { class: "small", html: intro }),
      el("p", { class: "step-text", "data-role": "rules", html: e.axes.map((a) => esc(a.rule)).join("<br>") }),
      ...(e.reached ? [table] : [el("p", { class: "step-text", "data-role": "unreached",
        text: "No input number lands on this output: it is the bias alone." })]),
      el("p", { class: "step-text", "data-role": "total",
        html: `${e.reached ? sums : "Σ of no products = "}${fmt(e.total)} + bias ${fmt(e.bias)} = <span class="result">${fmt(e.result)}</span>` }),
      checkLine(e.result, e.engine_value),
      ...(e.chain.length ? [this.chainBlock(e.engine_value, e.chain, "the transposed convolution's output")] : []));
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

  /** The elementwise steps after a unit (the API's `chain`): batch norm with its statistics, then the activation. */
  chainBlock(value, chain, what = "the convolution's output") {
    const lines = [`${what}: <strong>${fmt(value)}</strong>`];
    for (const step of chain) lines.push(`${this.formula(step)} = <span class="result">${fmt(step.engine_value)}</span> <span class="muted">(${esc(step.node)})</span>`);
    return el("div", { class: "step-text", html: lines.join("<br>") });
  }

  /** An elementwise step's formula with its numbers (`step`: a chain step or an elementwise explanation). */
  formula(step) {
    const x = fmt(step.input_value);
    if (step.op === "batch_norm") {
      return `batch norm: (x − mean) / √(var + ε) · γ + β = (${x} − ${signed(step.running_mean)}) / ` +
        `√(${fmt(step.running_var)} + ${step.eps}) · ${signed(step.weight)} + ${signed(step.bias)}`;
    }
    return {
      relu: `ReLU: max(0, ${x})`, relu6: `ReLU6: min(max(0, ${x}), 6)`, identity: x, dropout: `${x} (inference: unchanged)`,
    }[step.op] ?? `${TITLES[step.op] ?? step.op}(${x})`;
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
  poolView(e, unit) {
    const [kh, kw] = e.kernel_size;
    const [sh] = e.stride;
    const max = e.kind.startsWith("max");
    const cells = e.values.flatMap((row, i) => row.map((v, j) => ({
      i, j, v, inside: !e.row_in_padding[i] && !e.col_in_padding[j], running: e.running[i][j],
    })));
    const inside = cells.filter((c) => c.inside).map((c) => c.v);
    const intro = `Pooling looks at one channel at a time: a ${kh}×${kw} window of channel ${unit.channel} of ` +
      `<code>${esc(e.input)}</code>, moving ${sh} at a time, so the map shrinks (down-sampling). No weights to learn.`;
    // one step per number in the window (the running max or sum), then the result
    return this.animatedFigure(cells.length + 1, (step, stage) => {
      const block = this.gridBlock(`window on channel ${unit.channel}`, e.values.map((r) => r.map((v) => v ?? NaN)));
      const grid = block.querySelector(".grid");
      cells.slice(0, step + 1).forEach((c, k) => {
        grid.children[c.i * kw + c.j]?.classList.add(k === step ? "current" : "done");
      });
      let text;
      if (step < cells.length) {
        const seen = cells.slice(0, step + 1).filter((c) => c.inside).map((c) => fmt(c.v));
        const so = cells[step].running;
        text = so === null ? "this cell lies in the padding: nothing read yet"
          : max ? `largest so far: max(${seen.join(", ")}) = <strong>${fmt(so)}</strong>`
            : `sum so far: ${seen.join(" + ")} = <strong>${fmt(so)}</strong>`;
      } else {
        if (max) grid.children[e.argmax[0] * kw + e.argmax[1]]?.classList.add("argmax");
        text = max
          ? `max of the window = <span class="result">${fmt(e.result)}</span>`
          : `(${inside.map(fmt).join(" + ")}) / ${e.divisor} = <span class="result">${fmt(e.result)}</span>`;
      }
      stage.replaceChildren(block, el("p", { class: "step-text", html: text }));
      if (step === cells.length) stage.append(checkLine(e.result, e.engine_value));
    }, intro);
  }

  // --- fully connected --------------------------------------------------------------------------------
  linearView(e) {
    const intro = `A fully connected neuron: all ${e.in_features} numbers of <code>${esc(e.input)}</code>, each times its own weight, summed, plus a bias.`;
    const terms = e.terms.map((t) => ({ i: t.index, xi: t.input, wi: t.weight, p: t.product }));
    return el("div", {}, el("p", { class: "small", html: intro }), ...this.weightedSum(terms, e, e.in_features, "x"));
  }

  /** A weighted sum shown by its largest products (red +, blue −), then the engine's total, bias and check. */
  weightedSum(terms, e, count, name) {
    const ranked = [...terms].sort((a, c) => Math.abs(c.p) - Math.abs(a.p));
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
    const rest = e.omitted?.count ? [el("p", { class: "small muted", text: `the other ${e.omitted.count} products add up to ${fmt(e.omitted.sum)}` })] : [];
    return [
      el("p", { class: "small muted", text: ranked.length < count ? `the ${ranked.length} largest of the ${count} products (red +, blue −):` : `the ${count} products, largest first (red +, blue −):` }),
      list, ...rest,
      el("p", { class: "step-text", html: `Σ of all ${count} products ${fmt(e.total)} + bias ${fmt(e.bias)} = <span class="result">${fmt(e.result)}</span>` }),
      checkLine(e.result, e.engine_value),
    ];
  }

  // --- softmax ----------------------------------------------------------------------------------------
  softmaxView(e) {
    const what = e.over;
    const index = e.unit;
    const labels = this.context.arch?.labels ?? [];
    const name = (i) => (what === "class" ? labels[i] ?? String(i) : String(i));
    const table = el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { text: what }), el("th", { class: "num", text: "score z" }),
        el("th", { class: "num", text: "e^(z − max)" }), el("th", { class: "num", text: "probability" }))),
      el("tbody", {}, ...e.entries.map((x) => el("tr", { class: x.index === index ? "selected" : "" },
        el("td", { text: name(x.index) }), el("td", { class: "num", text: fmt(x.logit) }),
        el("td", { class: "num", text: fmt(x.exp) }), el("td", { class: "num", text: fmt(x.probability) })))));
    return el("div", {},
      el("p", { class: "small", text: `Softmax: e to the power of each score (minus the largest, ${fmt(e.max)}, for stability), divided by their sum ${fmt(e.exp_sum)}: positive numbers that add up to 1.` }),
      table,
      ...[this.omittedNote(e)].filter(Boolean),
      el("p", { class: "step-text", html: `${what} ${index}${what === "class" && labels[index] ? ` (${esc(labels[index])})` : ""}: ` +
        `${fmt(e.exp)} / ${fmt(e.exp_sum)} = <span class="result">${fmt(e.result)}</span>` }),
      checkLine(e.result, e.engine_value));
  }

  // --- global average pooling, merges, attention pooling, elementwise ----------------------------------
  gapView(e) {
    const [H, W] = e.spatial_shape;
    return el("div", {},
      el("p", { class: "step-text", html: `mean of the ${H}×${W} map ${e.channel} of ${esc(e.input)}: ${fmt(e.sum)} / ${e.divisor} = <span class="result">${fmt(e.result)}</span>` }),
      checkLine(e.result, e.engine_value));
  }

  mergeView(e) {
    const add = e.kind === "add";
    return el("div", {},
      el("p", { class: "step-text", html: `${e.operands.map(({ node, value }) => `${fmt(value)} <span class="muted">(${esc(node)})</span>`).join(add ? " + " : " × ")} = <span class="result">${fmt(e.result)}</span>` }),
      checkLine(e.result, e.engine_value));
  }

  attentionPoolView(e) {
    const [featureId, weightId] = e.inputs;
    const [H, W] = e.spatial_shape;
    return el("div", {},
      el("p", { class: "small", text: `Attention pooling: feature ${e.channel} of ${featureId} is summed over its ${H}×${W} positions, each weighted by the attention map (${weightId}, weights adding up to 1): a weighted sum that shows which positions drove the decision.` }),
      ...(e.weights ? [this.gridBlock("attention weights", e.weights)] : [this.omittedNote(e)]),
      el("p", { class: "step-text", html: `Σ weight × feature = <span class="result">${fmt(e.result)}</span>` }),
      checkLine(e.result, e.engine_value));
  }

  // --- pad and upsample: no arithmetic, each number is copied from one input position ------------------
  /** The input map around the position the unit copies (the API's neighbourhood), that cell outlined. */
  neighbourhoodBlock(e) {
    const n = e.neighbourhood;
    const block = this.gridBlock(`${e.input}, channel ${e.channel}: rows ${n.rows[0]}…${n.rows.at(-1)}, ` +
      `columns ${n.cols[0]}…${n.cols.at(-1)}`, n.values);
    if (n.source) block.querySelector(".grid").children[n.source[0] * n.cols.length + n.source[1]]?.classList.add("current");
    return block;
  }

  /** "(row 2, column 2)" from the API's per-axis answer. */
  sourceText(e) {
    return `(row ${e.source[0]}, column ${e.source[1]})`;
  }

  padView(e) {
    const [[top, bottom], [left, right]] = e.padding;
    const how = {
      constant: `filled with the constant ${fmt(e.value)}`,
      reflect: "the mirror image of the map (the edge itself is not repeated)",
      replicate: "the nearest edge value, repeated",
    }[e.mode] ?? esc(e.mode);
    const intro = `Padding (${esc(e.mode)}) adds a border around each map of <code>${esc(e.input)}</code> ` +
      `(${e.spatial_shape[0]}×${e.spatial_shape[1]}): ${count(top, "row")} above, ${bottom} below, ` +
      `${count(left, "column")} left, ${right} right; the border is ${how}. Nothing is computed: each number is copied.`;
    const rules = e.axes.map((a) => `output ${a.axis} ${a.output}: ${esc(a.rule)}`);
    const result = e.source
      ? `${e.in_border ? "in the border, so it copies" : "inside the map: it copies"} input ${this.sourceText(e)} = ` +
        `<span class="result">${fmt(e.result)}</span>`
      : `in the border: the constant <span class="result">${fmt(e.result)}</span> (no input number is read)`;
    return el("div", { "data-kind": "pad" },
      el("p", { class: "small", html: intro }),
      el("p", { class: "step-text", "data-role": "rules", html: rules.join("<br>") }),
      this.neighbourhoodBlock(e),
      el("p", { class: "step-text", html: result }),
      checkLine(e.result, e.engine_value),
      ...(e.chain.length ? [this.chainBlock(e.engine_value, e.chain, "the padded value")] : []));
  }

  upsampleView(e) {
    if (e.samples) return this.bilinearView(e);
    const [sh, sw] = e.scale_factor;
    const [rows, cols] = e.axes.map((a) => a.block);
    const intro = `Upsampling (${esc(e.mode)}) by ${sh}×${sw}: each number of <code>${esc(e.input)}</code> ` +
      `(${e.spatial_shape[0]}×${e.spatial_shape[1]}) is repeated in a ${sh}×${sw} block. No weights and nothing ` +
      "computed: each number is copied.";
    const rules = e.axes.map((a) => `output ${esc(a.rule)}`);
    return el("div", { "data-kind": "upsample" },
      el("p", { class: "small", html: intro }),
      el("p", { class: "step-text", "data-role": "rules", html: rules.join("<br>") }),
      this.neighbourhoodBlock(e),
      el("p", { class: "step-text", html: `it copies input ${this.sourceText(e)} = <span class="result">${fmt(e.result)}</span>, ` +
        `as do all the outputs of its block, rows ${rows[0]}…${rows[1]} and columns ${cols[0]}…${cols[1]}` }),
      checkLine(e.result, e.engine_value),
      ...(e.chain.length ? [this.chainBlock(e.engine_value, e.chain, "the upsampled value")] : []));
  }

  /** Bilinear upsampling: per axis the source coordinate and its two neighbours, then the 4 weighted values. */
  bilinearView(e) {
    const [sh, sw] = e.scale_factor;
    const n = e.neighbourhood;
    const intro = `Bilinear upsampling by ${sh}×${sw} ` +
      `(${e.align_corners ? "align_corners: the corner pixels stay on the corners" : "half-pixel centres"}): each ` +
      `output number samples <code>${esc(e.input)}</code> (${e.spatial_shape[0]}×${e.spatial_shape[1]}) between ` +
      "pixels and mixes the 4 numbers around that point, weighted by how close they are (the weights add up to 1). " +
      "No learned weights.";
    const block = this.neighbourhoodBlock(e);
    const cells = block.querySelector(".grid").children;
    for (const x of e.samples) cells[(x.row - n.rows[0]) * n.cols.length + (x.col - n.cols[0])]?.classList.add("current");
    const table = el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { text: "input (row, column)" }), el("th", { class: "num", text: "value" }),
        el("th", { class: "num", text: "weight" }), el("th", { class: "num", text: "value × weight" }))),
      el("tbody", {}, ...e.samples.map((x) => el("tr", {},
        el("td", { text: `(${x.row}, ${x.col})` }), el("td", { class: "num", text: fmt(x.value) }),
        el("td", { class: "num", text: fmt(x.weight) }), el("td", { class: "num", text: fmt(x.product) })))));
    return el("div", { "data-kind": "upsample" },
      el("p", { class: "small", html: intro }),
      el("p", { class: "step-text", "data-role": "rules", html: e.axes.map((a) => `output ${esc(a.rule)}`).join("<br>") }),
      block, table,
      el("p", { class: "step-text", html: `Σ value × weight = ${e.samples.map((x) => signed(x.product)).join(" + ")} = ` +
        `<span class="result">${fmt(e.result)}</span>` }),
      checkLine(e.result, e.engine_value),
      ...(e.chain.length ? [this.chainBlock(e.engine_value, e.chain, "the upsampled value")] : []));
  }

  elementwiseView(e) {
    return el("div", {},
      el("p", { class: "step-text", html: `${this.formula(e)} = <span class="result">${fmt(e.result)}</span> <span class="muted">(input from ${esc(e.input)})</span>` }),
      checkLine(e.result, e.engine_value));
  }
}
