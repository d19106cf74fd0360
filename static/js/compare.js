// Two inputs side by side in the explorer (issue 13): a second input ("Compare with…": one of the model's samples
// or a held-out digit), run through the same model, and for the selected layer input A's maps, input B's maps and
// their difference A − B. The difference and its summary are the API's (GET /api/runs/{a}/compare/{b}/nodes/{node}
// .json and .png); the page paints the grey levels on the diverging scale, white at 0, and lays out the numbers.
import { api, field, showError } from "./api.js";
import { SIGNED, legend } from "./colormap.js";
import { el } from "./dom.js";
import { loadTiles, paint, reflowVector } from "./featuremaps.js";
import { formatNumber } from "./grid.js";
import { inputChannels } from "./models.js";
import { createState } from "./state.js";

// Held-out shipped digits (indices 8000-9999 were never trained on) offered beside the sample pictures: the first
// of each class among them, so that any two classes can be compared; `compare=<index>` takes any of the 10,000.
export const HELD_OUT_DIGITS = [8000, 8001, 8003, 8004, 8006, 8007, 8014, 8016, 8021, 8042];
const DIFFERENCE_SCALE = "rdbu";
const TOP_SHOWN = 5;

/** What `compare=` holds: a whole number is a shipped digit's index, anything else a sample's file name. */
function parseChoice(value) {
  return /^\d+$/.test(value) ? { digit: Number(value) } : { file: value };
}

/** The choice in words: a held-out digit by its index, a sample by its name (its button's title) or file. */
function choiceName(value) {
  const { digit, file } = parseChoice(value);
  if (digit !== undefined) return `held-out digit #${digit}`;
  const sample = [...document.querySelectorAll("#samples .sample")].find((b) => b.dataset.file === file);
  return sample?.title ? `sample ${sample.title}` : file;
}

export class CompareView {
  /**
   * @param {object} options
   * @param {HTMLSelectElement} options.select  the "Compare with…" control
   * @param {HTMLElement} options.panel  the panel shown while comparing (#compare-panel), its body #compare-body
   * @param {(unit: object) => void} options.onUnit  a channel picked in the list: { node, channel, y, x }
   */
  constructor({ select, panel, onUnit }) {
    this.select = select;
    this.panel = panel;
    this.body = panel.querySelector("#compare-body");
    this.now = {}; // the explorer's now, as `update` was last told it
    this.info = null; // the model the choices were made for
    this.onUnit = onUnit;
    this.others = new Map(); // "model|choice" -> promise of the B run's activations answer
    this.token = 0;
    this.shown = ""; // the key of what the panel shows, so that an unchanged context is not fetched again
    this.fetches = new AbortController();
    this.pending = false;
    this.state = createState({ compare: "" }, () => {
      this.select.value = this.state.values.compare;
      this.refresh();
    });
    select.addEventListener("change", () => this.state.set({ compare: select.value }, { push: true }));
    panel.querySelector("#compare-clear").addEventListener("click", () => this.state.set({ compare: "" }, { push: true }));
  }

  /** The choices for a model: the samples of its kind (photos, or digits for a one-channel model), held-out digits. */
  setModel(info) {
    const kind = inputChannels(info) === 1 ? "digit" : "photo";
    const samples = [...document.querySelectorAll("#samples .sample")].filter((b) => b.dataset.kind === kind)
      .map((b) => new Option(choiceName(b.dataset.file), b.dataset.file));
    const digits = kind === "digit" ? HELD_OUT_DIGITS.map((i) => new Option(`held-out digit #${i}`, String(i))) : [];
    const options = [new Option("nothing (one input)", ""), ...samples, ...digits];
    const value = this.state.values.compare;
    if (value && !options.some((o) => o.value === value)) options.push(new Option(choiceName(value), value));
    this.select.replaceChildren(...options);
    this.select.value = value;
    this.refresh();
  }

  /**
   * The explorer's now: { model, info (the model's entry), run (input A's activations), layer, scale, range,
   * inputName }. The choices follow the model; the panel is drawn again only when what it shows changed.
   */
  update(now) {
    this.now = now;
    if (now.info && now.info !== this.info) {
      this.info = now.info;
      this.setModel(now.info);
    }
    this.refresh();
  }

  /** Redraw from the explorer's state, once for any number of calls in one task. */
  refresh() {
    if (this.pending) return;
    this.pending = true;
    queueMicrotask(() => {
      this.pending = false;
      this.render();
    });
  }

  async render() {
    const choice = this.state.values.compare;
    const { model, info, run, layer, scale, range, inputName } = this.now;
    if (!choice) {
      this.retire();
      if (!this.panel.hidden) this.panel.hidden = true;
      if (this.body.firstChild) this.body.replaceChildren();
      return;
    }
    if (this.panel.hidden) this.panel.hidden = false;
    if (!run || run.model_id !== model) { // no input A yet, or the last model's while the new one loads
      this.retire();
      this.message(`No input A yet: the explorer's input (a sample, an upload or a drawing) is A, ${choiceName(choice)} ` +
        "is B.");
      return;
    }
    const key = [model, run.run_id, choice, layer, scale, range].join("|");
    if (key === this.shown) return;
    const token = this.retire();
    this.body.setAttribute("aria-busy", "true"); // what is shown stays until the new comparison replaces it
    let other;
    try {
      other = await this.otherRun(model, choice);
    } catch (err) {
      if (token !== this.token) return;
      showError(err, `the input to compare with (${choiceName(choice)})`);
      this.message(`No comparison: ${choiceName(choice)} could not be run through ${model} (the message above says why).`);
      return;
    }
    if (token !== this.token) return;
    const names = { a: inputName ?? "the explorer's input", b: choiceName(choice) };
    const node = run.nodes.find((n) => n.id === layer);
    const otherNode = other.nodes.find((n) => n.id === layer);
    if (!node || !otherNode) {
      this.draw({ info, run, other, names });
      this.shown = key;
      return;
    }
    try {
      const query = range === "layer" ? "?scale=layer" : "";
      const url = `/api/runs/${encodeURIComponent(run.run_id)}/compare/${encodeURIComponent(other.run_id)}` +
        `/nodes/${encodeURIComponent(node.id)}.json${query}`;
      const signal = this.fetches.signal;
      const difference = await api(url, { signal, label: "Comparing the two inputs…" });
      const layout = field(difference, "layout", "object");
      const maps = await Promise.all([
        this.tiles(layout, difference.png_url, { signal, ranges: field(layout, "ranges") }),
        this.tiles(node.layout, `${difference.run_png_url}${query}`, { signal, signed: SIGNED.has(scale) }),
        this.tiles(otherNode.layout, `${difference.other_png_url}${query}`, { signal, signed: SIGNED.has(scale) }),
      ]);
      if (token !== this.token) return;
      this.draw({ info, run, other, names, node, difference, maps, scale, range });
      this.shown = key;
    } catch (err) {
      if (token !== this.token || err?.name === "AbortError") return;
      this.others.delete(`${model}|${choice}`); // B's run may have expired: the next try makes it again
      showError(err, `comparing ${layer}`);
      this.message(`No comparison of ${layer}: the message above says why.`);
    }
  }

  /** Cancel what the previous render still fetches; the new render's token. */
  retire() {
    this.fetches.abort();
    this.fetches = new AbortController();
    this.shown = "";
    this.token += 1;
    return this.token;
  }

  /** Only a message in the panel (nothing of an earlier comparison stays); the same message again changes nothing. */
  message(text) {
    this.shows("");
    const first = this.body.firstElementChild;
    if (this.body.children.length === 1 && first.classList.contains("compare-message") && first.textContent === text) return;
    this.body.replaceChildren(el("p", { class: "muted compare-message", text }));
  }

  /** Mark the panel's body: the layer it shows ("" for none), and whether a newer comparison is on its way. */
  shows(node, busy = false) {
    if (this.body.dataset.node !== node) this.body.dataset.node = node;
    if (this.body.getAttribute("aria-busy") !== String(busy)) this.body.setAttribute("aria-busy", String(busy));
  }

  /** B's run: the choice through the same model (POST /api/models/{id}/activations), once per model and choice. */
  otherRun(model, choice) {
    const key = `${model}|${choice}`;
    if (!this.others.has(key)) {
      const { digit, file } = parseChoice(choice);
      const source = digit !== undefined ? `/api/digits/${digit}.png?scale=1` : `/static/samples/${encodeURIComponent(file)}`;
      const promise = api(source, { as: "blob", label: "Loading the input to compare with…" }).then((blob) => {
        const form = new FormData();
        form.append("image", blob, digit !== undefined ? `digit-${digit}.png` : file);
        return api(`/api/models/${encodeURIComponent(model)}/activations`, { body: form, label: "Running the second input…" });
      }).catch((err) => {
        this.others.delete(key);
        throw err;
      });
      this.others.set(key, promise);
    }
    return this.others.get(key);
  }

  /** A node's grey tiles and, when they are to be drawn on a signed scale, their ranges (its .json's layout). */
  async tiles(layout, url, { signal, ranges = null, signed = false }) {
    const loaded = await loadTiles(url, layout, { signal });
    if (!ranges && signed) {
      const answer = await api(url.replace(/\.png(\?|$)/, ".json$1"), { signal, label: "Fetching the maps' value ranges…" });
      ranges = field(field(answer, "layout", "object"), "ranges");
    }
    return { ...loaded, ranges };
  }

  /** The panel: both pictures, and for a layer A's maps, B's maps, A − B with its legend, and the summary. */
  draw({ info, run, other, names, node = null, difference = null, maps = null, scale = "", range = "map" }) {
    const pictures = Boolean(info?.takes_images);
    const side = (which, answer, name) => el("figure", { class: "compare-side", "data-side": which },
      el("figcaption", { class: "compare-caption" }, el("strong", { text: `${which.toUpperCase()}` }), ` ${name}`),
      pictures ? el("img", { class: "compare-input", src: `/api/runs/${encodeURIComponent(answer.run_id)}/input.png`,
        alt: `Input ${which.toUpperCase()} as the model sees it` }) : el("div", { class: "compare-input" }));
    const a = side("a", run, names.a);
    const b = side("b", other, names.b);
    const diff = el("figure", { class: "compare-side", "data-side": "difference" },
      el("figcaption", { class: "compare-caption" }, el("strong", { text: "A − B" }), " the difference"));
    this.shows(node?.id ?? "");
    if (!node) {
      this.body.replaceChildren(el("div", { class: "compare-row" }, a, b, diff),
        el("p", { class: "muted compare-message", text: "Step to a layer (→, or click it in the overview) to compare " +
          "its maps for both inputs and see their difference." }));
      return;
    }
    const [diffMaps, aMaps, bMaps] = maps;
    a.append(this.canvas(aMaps, scale, node, `${node.id} for input A`));
    b.append(this.canvas(bMaps, scale, node, `${node.id} for input B`));
    const key = el("canvas", { class: "compare-legend", width: 160, height: 12, "aria-hidden": "true" });
    legend(key, DIFFERENCE_SCALE);
    diff.querySelector("figcaption").after(el("div", { class: "compare-input compare-key" }, key,
      el("p", { class: "small compare-key-words" }, el("span", { class: "compare-b", text: "blue: B larger" }), " · ",
        el("span", { text: "white: the same" }), " · ", el("span", { class: "compare-a", text: "red: A larger" })),
      el("p", { class: "small muted compare-key-words", text: range === "layer"
        ? "±the layer's largest |A − B| (one range)" : "each map ±its own largest |A − B|" })));
    diff.append(this.canvas(diffMaps, DIFFERENCE_SCALE, node, `${node.id}: A − B, blue where B is larger, red where A is`));
    this.body.replaceChildren(el("div", { class: "compare-row" }, a, b, diff), this.summary(node, difference));
  }

  /** One side's maps painted (a vector re-flowed into a near-square, as in the strip). */
  canvas({ grey, layout, ranges }, scale, node, label) {
    const canvas = el("canvas", { class: "tiles compare-maps", role: "img", "aria-label": label });
    const vector = node.shape.length === 1;
    paint(canvas, vector ? reflowVector(grey) : grey, scale, vector ? null : layout, ranges);
    return el("div", { class: "compare-maps-box" }, canvas);
  }

  /** The API's summary: cosine similarity, relative change, the largest and mean |A − B|, the channels that changed most. */
  summary(node, difference) {
    const number = (name, value, text, title) => [
      el("dt", { text: name, title }), el("dd", { class: "mono", "data-field": value, "data-value": String(difference[value]), text })];
    const relative = difference.relative_change;
    const list = el("dl", { class: "compare-summary" },
      ...number("cosine similarity", "cosine_similarity", difference.cosine_similarity.toFixed(3),
        "A · B / (‖A‖ ‖B‖) of all the layer's numbers: 1 the same pattern (whatever its strength), 0 nothing in common"),
      ...number("relative change", "relative_change", relative === null ? "— (A is all zeros)" : `${(100 * relative).toFixed(1)}%`,
        "‖A − B‖ / ‖A‖: how large the difference is beside A's own activation"),
      ...number("largest |A − B|", "max_abs", formatNumber(difference.max_abs), "the largest difference of one number"),
      ...number("mean |A − B|", "mean_abs", formatNumber(difference.mean_abs), "the mean difference over all the layer's numbers"));
    const vector = node.shape.length === 1;
    const top = field(difference, "top_channels").slice(0, TOP_SHOWN);
    const items = top.map((change) => {
      const [y, x] = change.largest_at;
      const unit = vector ? { node: node.id, channel: x, y: null, x: null } : { node: node.id, channel: change.channel, y, x };
      const words = vector ? `unit ${x}: |A − B| ${formatNumber(change.max_abs)}`
        : `channel ${change.channel}: mean |A − B| ${formatNumber(change.mean_abs)}, largest ${formatNumber(change.max_abs)}`;
      const button = el("button", { type: "button", class: "secondary compare-channel", "data-channel": String(change.channel),
        title: vector ? `explain unit ${x} of ${node.id} for input A` : `explain the neuron of channel ${change.channel} ` +
          `where A and B differ most (row ${y}, column ${x}), for input A`, text: words });
      button.addEventListener("click", () => this.onUnit(unit));
      return el("li", {}, button);
    });
    const heading = vector ? "Where it changed most" : "Channels that changed most";
    return el("div", { class: "compare-numbers" }, list,
      el("div", { class: "compare-top" }, el("h3", { text: heading }), el("ol", { class: "compare-top-list" }, ...items)));
  }
}
