// The input picker of a learned view (templates/_input_macros.html, model_and_input): the shipped samples of the
// model's kind, an upload, or a file dropped on the drop zone. It holds the chosen input and says when it changes;
// the view decides what to compute with it.
import { api, showError } from "./api.js";
import { inputChannels } from "./models.js";

/** "digit" for a one-channel model, else "photo": the samples (data-kind) a model can read. */
export function kindOf(model) {
  return inputChannels(model) === 1 ? "digit" : "photo";
}

/** The request body and headers that send ``input`` ({ blob, name, tensor }) to a route reading an input. */
export function inputRequest(input) {
  if (input.tensor) return { body: input.blob, headers: { "Content-Type": "application/x-npy" } };
  const body = new FormData();
  body.append("image", input.blob, input.name.includes(".") ? input.name : `${input.name}.png`);
  return { body, headers: {} };
}

export class InputPicker {
  /**
   * @param {Element} root the view's element
   * @param {string} prefix the ids' prefix (`adv`: #adv-samples, #adv-file, #adv-input-name)
   * @param {{ onSample: (file: string) => void, onFile: (input: object) => void }} handlers a sample button was
   *   pressed (the view records it in its state, then calls load); a file was chosen or dropped (already taken)
   */
  constructor(root, prefix, { onSample, onFile }) {
    this.root = root;
    this.prefix = prefix;
    this.input = null; // { blob, name, tensor }
    this.buttons().forEach((button) => button.addEventListener("click", () => onSample(button.dataset.file)));
    const chooser = this.byId("file");
    chooser.addEventListener("change", () => {
      const file = chooser.files?.[0];
      chooser.value = "";
      if (file) onFile(this.take(file));
    });
    const drop = root.querySelector(".dropzone");
    drop.addEventListener("dragover", (event) => event.preventDefault());
    drop.addEventListener("drop", (event) => {
      const file = event.dataTransfer?.files?.[0];
      if (file) {
        event.preventDefault();
        onFile(this.take(file));
      }
    });
  }

  byId(name) {
    return this.root.querySelector(`#${this.prefix}-${name}`);
  }

  buttons() {
    return this.root.querySelectorAll(`#${this.prefix}-samples .sample`);
  }

  /** Show only the samples ``model`` reads; the file of the first of them (or null). */
  showKind(model) {
    const kind = kindOf(model);
    this.buttons().forEach((button) => { button.hidden = button.dataset.kind !== kind; });
    return this.root.querySelector(`#${this.prefix}-samples .sample[data-kind="${kind}"]`)?.dataset.file ?? null;
  }

  /** Mark ``file``'s button pressed (none for "" or an upload). */
  press(file) {
    this.buttons().forEach((b) => b.setAttribute("aria-pressed", String(Boolean(file) && b.dataset.file === file)));
  }

  /** Fetch the shipped sample ``file`` as the input; null (and the error shown) when it cannot be loaded. */
  async load(file) {
    this.press(file);
    try {
      const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the sample…" });
      this.input = { blob, name: file, tensor: false };
      this.byId("input-name").textContent = "";
      return this.input;
    } catch (err) {
      showError(err, `sample ${file}`);
      return null;
    }
  }

  /** A file the user chose or dropped, as the input (a `.npy` is sent as a tensor). */
  take(file) {
    this.input = { blob: file, name: file.name || "your image", tensor: (file.name || "").toLowerCase().endsWith(".npy") };
    this.press("");
    this.byId("input-name").textContent = `Your file: ${this.input.name}`;
    return this.input;
  }

  clear() {
    this.input = null;
  }
}
