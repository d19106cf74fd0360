// CNN vs RNN on the same digit, side by side. The CNN: a neuron of its first convolution sees a small patch (its
// receptive field, the API's box), and all of them are computed at once (that layer's feature maps, every position
// filled); deeper neurons see bigger patches. The RNN: the rows read so far, the row being read, the memory it
// carries. Both answers come from /predict; the boxes from /receptive-field; the maps from the CNN's run.
import { api } from "./api.js";
import { drawBars } from "./bars.js";
import { el, esc } from "./explain/common.js";
import { loadTiles, paint } from "./featuremaps.js";
import { archNodes } from "./models.js";
import { Strip, colourScale, drawSequence, placeBand, rangeOf } from "./sequence_views.js";

const $ = (id) => document.getElementById(id);
const fields = new Map(); // the API's receptive fields, by model, node and unit

/** The API's box of `index` in `node` of `model` (no effective field: the theoretical box only). */
function fieldOf(model, node, index) {
  const key = `${model}|${node}|${index}`;
  if (!fields.has(key)) {
    fields.set(key, api(`/api/models/${encodeURIComponent(model)}/receptive-field`, {
      json: { node, index, effective: false }, label: "Locating the receptive field…",
    }).catch((err) => {
      fields.delete(key);
      throw err;
    }));
  }
  return fields.get(key);
}

/** "5×5" from a receptive field's axes. */
function sizeText(field) {
  return field.axes.map((a) => a.size).join("×");
}

export class CnnVsRnn {
  constructor({ onPick }) {
    this.cnn = null;
    this.rnn = null;
    this.column = null;
    this.token = 0;
    // a click on the CNN's digit moves its neuron there, and the RNN to that row
    $("cnn-digit").addEventListener("click", (event) => {
      if (!this.cnn) return;
      const rect = event.currentTarget.getBoundingClientRect();
      const [H, W] = this.cnn.mapSize;
      const y = Math.floor(((event.clientY - rect.top) / rect.height) * H);
      const x = Math.floor(((event.clientX - rect.left) / rect.width) * W);
      this.column = Math.max(0, Math.min(W - 1, x));
      onPick(Math.max(0, Math.min(H - 1, y)));
    });
  }

  /**
   * The CNN's side: `model` (the list entry), `detail` (its architecture), `run` (its activations on the digit),
   * `input` (the digit it read, H × W), `classes` (its /predict answer).
   */
  async showCnn({ model, detail, run, input, classes }) {
    const nodes = archNodes(detail);
    // the first layer whose neurons see a patch, and the last that still has one (deeper ones see everything)
    const local = nodes.filter((n) => n.receptive_field?.status === "local" && n.receptive_field.axes.every((a) => a.size > 1));
    const first = local[0];
    const deepest = local[local.length - 1];
    $("cnn-title").textContent = `CNN (${model.name ?? model.id}): a local patch, everywhere at once`;
    drawSequence($("cnn-digit"), input);
    drawBars($("cnn-bars"), classes);
    if (!first) {
      this.cnn = null;
      $("cnn-text").textContent = "This network has no layer whose neurons see a local patch.";
      return;
    }
    const runNode = run.nodes.find((n) => n.id === first.id);
    const [channels, H, W] = first.output_shape;
    // a unit at row y sits over input row y only when the layer keeps the input's positions (stride 1, padded)
    const samePositions = H === input.length && W === input[0].length;
    this.cnn = { model, first, deepest, mapSize: [H, W], samePositions, inputSize: [input.length, input[0].length] };
    if (this.column === null || this.column >= W) this.column = Math.floor(W / 2);
    const total = first.output_shape.reduce((a, b) => a * b, 1);
    $("cnn-text").innerHTML = `A neuron of <code>${esc(first.id)}</code> sees only a ${sizeText(first.receptive_field)} patch ` +
      `of the digit (outlined); its ${channels} maps hold ${total.toLocaleString("en")} neurons, each with its own patch, all computed at ` +
      `the same time: no order, no memory. Deeper layers see more: <code>${esc(deepest.id)}</code> ` +
      `${sizeText(deepest.receptive_field)} pixels, and the fully connected layer the whole digit. Click the digit to move the neuron.`;
    $("cnn-maps-note").textContent = `Right: the ${channels} maps of ${first.id}, ${H}×${W} each, every position at once.`;
    if (runNode) {
      try {
        const { grey, layout } = await loadTiles(runNode.png_url, runNode.layout);
        paint($("cnn-maps"), grey, "viridis", layout);
      } catch {
        $("cnn-maps-note").textContent = `The maps of ${first.id} could not be fetched.`;
      }
    }
  }

  /** The RNN's side: `model` (list entry), `rows` (T × F), `memory` (h after each step, T × H), `classes` (/predict). */
  showRnn({ model, cellName, rows, memory, classes }) {
    this.rnn = { model, cellName, rows, memory, scale: colourScale(rangeOf(memory)) };
    $("rnn-title").textContent = `RNN (${model.name ?? model.id}): row by row, with a memory`;
    drawSequence($("rnn-digit"), rows);
    drawBars($("rnn-bars"), classes);
    const holder = $("rnn-memory");
    holder.replaceChildren();
    this.memoryStrip = new Strip(holder, { label: "<b>h</b> memory", count: memory[0].length,
      title: "the memory after the row being read", name: "memory" });
  }

  /** Show step `t`: the RNN's row and memory; the CNN's neuron over that row. */
  async step(t) {
    if (this.rnn) {
      const { rows, memory, cellName } = this.rnn;
      const T = rows.length;
      placeBand($("rnn-digit-band"), $("rnn-digit-unread"), t, T);
      this.memoryStrip.set(memory[t], this.rnn.scale);
      $("rnn-text").innerHTML = `The ${esc(cellName)} is reading row ${t} of ${T} (outlined). Rows 0–${t} are behind it: ` +
        `all it knows of them is its memory, the ${memory[t].length} numbers of h below. ` +
        (t < T - 1 ? `Rows ${t + 1}–${T - 1} (veiled) are still to come.` : "It has read every row: its answer is below.");
    }
    if (!this.cnn) return;
    const token = ++this.token;
    const { model, first, samePositions, mapSize } = this.cnn;
    const y = samePositions ? t : Math.floor(mapSize[0] / 2);
    const answer = await fieldOf(model.id, first.id, [y, this.column]);
    if (token !== this.token) return;
    const [bh, bw] = answer.box;
    const stack = $("cnn-digit-stack");
    const [H, W] = this.cnn.inputSize;
    let box = stack.querySelector(".field-box");
    if (!box) {
      box = el("div", { class: "field-box", title: "the receptive field of one neuron" });
      stack.append(box);
    }
    box.style.left = `${(bw.clipped_start / W) * 100}%`;
    box.style.top = `${(bh.clipped_start / H) * 100}%`;
    box.style.width = `${((bw.clipped_end - bw.clipped_start + 1) / W) * 100}%`;
    box.style.height = `${((bh.clipped_end - bh.clipped_start + 1) / H) * 100}%`;
    box.dataset.rows = `${bh.clipped_start},${bh.clipped_end}`;
    $("cnn-field-note").textContent = `Outlined: neuron [${y}, ${this.column}] of ${first.id} sees rows ${bh.start}…${bh.end}, ` +
      `columns ${bw.start}…${bw.end}.`;
  }
}
