// The grid widget every operation view shares (CNN Explainer's idea, written once): a matrix of numbers
// with cells tinted by value, optional padding drawn around it, optional editing, and named marks
// (the sliding window, the never-read cells, the argmax, ...) that views set and clear per animation step.

const fmt = (v) => {
  if (v === null || v === undefined || Number.isNaN(v)) return "";
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 0.095 || a === 0) return v.toFixed(2);
  return v.toFixed(3); // small weights and products keep a significant digit
};

export const formatNumber = fmt;

function tint(value, scale) {
  if (value === null || value === undefined || !scale) return "";
  const t = Math.max(-1, Math.min(1, value / scale));
  // blue for negative, red for positive; light enough that dark digits stay readable (contrast ≥ 4.5)
  return t >= 0 ? `rgba(214, 96, 77, ${0.55 * t})` : `rgba(67, 147, 195, ${0.55 * -t})`;
}

export class Grid {
  /**
   * @param {HTMLElement} container
   * @param {object} options
   * @param {string} options.label  accessible name of the grid ("input", "kernel", ...)
   * @param {boolean} [options.editable]
   * @param {(row: number, col: number, value: number) => void} [options.onEdit]  data coordinates
   */
  constructor(container, { label, editable = false, onEdit = () => {}, compact = false } = {}) {
    this.container = container;
    this.label = label;
    this.editable = editable;
    this.onEdit = onEdit;
    this.compact = compact;
    this.cells = [];
    this.pad = [0, 0, 0, 0]; // top, bottom, left, right
    this.values = [];
    this.element = document.createElement("div");
    this.element.className = `grid${compact ? " grid-compact" : ""}`;
    this.element.setAttribute("role", "group");
    this.element.setAttribute("aria-label", label);
    container.replaceChildren(this.element);
  }

  /** Draw `values` (rows of numbers; null for "not yet computed") with `pad` = [top, bottom, left, right]. */
  set(values, { pad = [0, 0, 0, 0], scale, padText = "0" } = {}) {
    this.values = values.map((row) => row.slice());
    this.pad = pad;
    const rows = values.length + pad[0] + pad[1];
    const cols = (values[0]?.length ?? 0) + pad[2] + pad[3];
    const finite = values.flat().filter((v) => v !== null && Number.isFinite(v));
    this.scale = scale ?? Math.max(1e-9, ...finite.map(Math.abs));
    this.element.style.gridTemplateColumns = `repeat(${cols}, minmax(var(--cell), max-content))`;
    this.element.dataset.rows = String(rows);
    this.element.dataset.cols = String(cols);
    const cells = [];
    const fragment = document.createDocumentFragment();
    for (let r = 0; r < rows; r += 1) {
      const row = [];
      for (let c = 0; c < cols; c += 1) {
        const dr = r - pad[0];
        const dc = c - pad[2];
        const inside = dr >= 0 && dc >= 0 && dr < values.length && dc < values[0].length;
        let cell;
        if (inside && this.editable) {
          cell = document.createElement("input");
          cell.type = "text";
          cell.inputMode = "decimal";
          cell.value = fmt(values[dr][dc]);
          cell.setAttribute("aria-label", `${this.label} row ${dr + 1} column ${dc + 1}`);
          cell.addEventListener("change", () => {
            const v = Number(cell.value.replace(",", "."));
            if (Number.isFinite(v)) {
              this.values[dr][dc] = v;
              this.onEdit(dr, dc, v);
            } else {
              cell.value = fmt(this.values[dr][dc]);
            }
          });
        } else {
          cell = document.createElement("span");
          cell.textContent = inside ? fmt(values[dr][dc]) : padText;
        }
        cell.className = `cell${inside ? "" : " pad"}`;
        if (inside) cell.style.backgroundColor = tint(values[dr][dc], this.scale);
        cell.dataset.r = String(r);
        cell.dataset.c = String(c);
        row.push(cell);
        fragment.append(cell);
      }
      cells.push(row);
    }
    this.cells = cells;
    this.element.replaceChildren(fragment);
  }

  /** Change one data cell's value (row, col in data coordinates), e.g. an output filled in by an animation. */
  setValue(row, col, value) {
    this.values[row][col] = value;
    const cell = this.cells[row + this.pad[0]]?.[col + this.pad[2]];
    if (!cell) return;
    if (cell.tagName === "INPUT") cell.value = fmt(value);
    else cell.textContent = fmt(value);
    cell.style.backgroundColor = tint(value, this.scale);
  }

  /** Mark cells (in padded coordinates [row, col]) with a CSS class; previous cells with it are cleared. */
  mark(className, positions) {
    this.clear(className);
    for (const [r, c] of positions) this.cells[r]?.[c]?.classList.add(className);
  }

  /** Mark cells given in data coordinates. */
  markData(className, positions) {
    this.mark(className, positions.map(([r, c]) => [r + this.pad[0], c + this.pad[2]]));
  }

  clear(className) {
    this.element.querySelectorAll(`.${className}`).forEach((el) => el.classList.remove(className));
  }

  /** Attach a small label (e.g. a product) to cells in padded coordinates; pass [] to remove all. */
  annotate(entries) {
    this.element.querySelectorAll(".cell-note").forEach((el) => el.remove());
    for (const { r, c, text } of entries) {
      const cell = this.cells[r]?.[c];
      if (!cell || cell.tagName === "INPUT") continue;
      const note = document.createElement("small");
      note.className = "cell-note";
      note.textContent = text;
      cell.append(note);
    }
  }
}
