// The region of a model's output map (segmentation: class scores at every position) whose logits make the score
// an attention map explains: drag a box on the output's grid, or type its bounds. The box is the API's `region`
// parameter as it is spelled there: the starts, then the ends, half-open, in output positions ([y0, x0, y1, x1] for a
// map (K, H, W)); null is the whole map, the default. The axis names and the map's size come from the API
// (GET /api/models/{id}/attention: region_axes, region_shape).

/** The box in words: null -> "the whole map (8 × 8 output positions)"; [2, 2, 6, 5] -> "y 2…5, x 2…4". */
export function describeRegion(region, axes, shape) {
  if (!region) return `the whole map (${shape.join(" × ")} output positions)`;
  const n = axes.length;
  return axes.map((a, i) => `${a} ${region[i]}…${region[n + i] - 1}`).join(", ");
}

/** "2,2,6,5" (the page's state) -> [2, 2, 6, 5]; "" -> null (the whole map). */
export function parseRegion(text) {
  if (!text) return null;
  return text.split(",").map(Number);
}

export class RegionPicker {
  /**
   * @param {object} options
   * @param {HTMLCanvasElement} options.canvas  the output's grid: drag a box on it (the last one or two axes)
   * @param {HTMLElement} options.inputs  where the number inputs go (one per bound)
   * @param {(region: number[] | null) => void} options.onChange  a new box (null: the whole map)
   */
  constructor({ canvas, inputs, onChange }) {
    this.canvas = canvas;
    this.inputs = inputs;
    this.onChange = onChange;
    this.axes = [];
    this.shape = [];
    this.region = null;
    this.dragFrom = null;
    canvas.addEventListener("pointerdown", (event) => {
      if (!this.shape.length) return;
      canvas.setPointerCapture(event.pointerId);
      this.dragFrom = this.cellAt(event);
      this.draw(this.boxFrom(this.dragFrom, this.dragFrom));
    });
    canvas.addEventListener("pointermove", (event) => {
      if (this.dragFrom) this.draw(this.boxFrom(this.dragFrom, this.cellAt(event)));
    });
    const end = (event) => {
      if (!this.dragFrom) return;
      const box = this.boxFrom(this.dragFrom, this.cellAt(event));
      this.dragFrom = null;
      this.commit(box);
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", () => {
      this.dragFrom = null;
      this.draw(this.full());
    });
  }

  /** The map's region axes (["y", "x"]) and their sizes ([8, 8]), from the API. */
  setup(axes, shape) {
    this.axes = axes;
    this.shape = shape;
    const n = axes.length;
    const bound = (i) => {
      const axis = axes[i % n];
      const label = document.createElement("label");
      label.className = "region-bound";
      const input = document.createElement("input");
      input.type = "number";
      input.min = "0";
      input.max = String(shape[i % n]);
      input.step = "1";
      input.dataset.bound = String(i);
      input.addEventListener("change", () => this.commit(this.typed()));
      label.append(`${axis}${i < n ? 0 : 1}`, input);
      return label;
    };
    this.inputs.replaceChildren(...Array.from({ length: 2 * n }, (_, i) => bound(i)));
    this.inputs.style.gridTemplateColumns = `repeat(${n}, max-content)`; // the starts on one row, the ends below
    // the grid shows the last two axes (a volume's y and x; its d bounds are typed), a sequence's one as a row
    const [rows, cols] = this.plane();
    const cell = Math.max(3, Math.min(28, Math.floor(256 / Math.max(rows, cols))));
    this.cell = cell;
    this.canvas.width = cols * cell;
    this.canvas.height = rows * cell;
    this.canvas.setAttribute("aria-label", `The output map, ${shape.join(" × ")} positions: drag a box on it`);
  }

  /** Rows and columns of the grid drawn. */
  plane() {
    return this.shape.length === 1 ? [1, this.shape[0]] : this.shape.slice(-2);
  }

  /** The whole map as a box. */
  whole() {
    return [...this.shape.map(() => 0), ...this.shape];
  }

  /** The box shown: the region, or the whole map. */
  full() {
    return this.region ?? this.whole();
  }

  /** Show `region` (null: the whole map) in the inputs and on the grid. */
  show(region) {
    this.region = region;
    const box = this.full();
    this.inputs.querySelectorAll("input").forEach((input) => { input.value = String(box[Number(input.dataset.bound)] ?? ""); });
    this.draw(box);
  }

  typed() {
    return [...this.inputs.querySelectorAll("input")].map((input) => Number(input.value));
  }

  /** A new box: null when it is the whole map, so that the default is sent as no region at all. */
  commit(box) {
    const whole = this.whole();
    const region = box.every((v, i) => v === whole[i]) ? null : box;
    this.show(region);
    this.onChange(region);
  }

  cellAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const [rows, cols] = this.plane();
    const clamp = (v, n) => Math.max(0, Math.min(n - 1, Math.floor(v * n)));
    return [clamp((event.clientY - rect.top) / rect.height, rows), clamp((event.clientX - rect.left) / rect.width, cols)];
  }

  /** The half-open box spanning two cells of the grid (the other axes' bounds kept). */
  boxFrom([r0, c0], [r1, c1]) {
    const box = [...this.full()];
    const n = this.shape.length;
    const put = (axis, a, b) => {
      box[axis] = Math.min(a, b);
      box[n + axis] = Math.max(a, b) + 1;
    };
    if (n === 1) put(0, c0, c1);
    else {
      put(n - 2, r0, r1);
      put(n - 1, c0, c1);
    }
    return box;
  }

  draw(box) {
    const { canvas, cell } = this;
    const ctx = canvas.getContext("2d");
    const [rows, cols] = this.plane();
    const n = this.shape.length;
    ctx.fillStyle = "#eef0f4";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (cell >= 6) {
      ctx.strokeStyle = "#c9ced8";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let r = 1; r < rows; r += 1) { ctx.moveTo(0, r * cell + 0.5); ctx.lineTo(canvas.width, r * cell + 0.5); }
      for (let c = 1; c < cols; c += 1) { ctx.moveTo(c * cell + 0.5, 0); ctx.lineTo(c * cell + 0.5, canvas.height); }
      ctx.stroke();
    }
    const [top, bottom] = n === 1 ? [0, 1] : [box[n - 2], box[2 * n - 2]];
    const [left, right] = [box[n - 1], box[2 * n - 1]];
    ctx.fillStyle = "rgba(31, 95, 191, 0.35)";
    ctx.fillRect(left * cell, top * cell, (right - left) * cell, (bottom - top) * cell);
    ctx.strokeStyle = "#1f5fbf";
    ctx.lineWidth = 2;
    ctx.strokeRect(left * cell + 1, top * cell + 1, (right - left) * cell - 2, (bottom - top) * cell - 2);
    this.canvas.dataset.box = box.join(",");
  }
}
