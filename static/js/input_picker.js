// The input picker of a learned view (templates/_input_macros.html, model_and_input): the shipped samples of the
// model's kind, an upload, or a file dropped on the drop zone. It says when the input changes (the view keeps the
// input in its data and decides what to compute with it) and is drawn from the view's state and data (`show`).
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

/** Fetch the shipped sample ``file`` as an input (throws the API's error). */
export async function fetchSample(file) {
  const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the sample…" });
  return { blob, name: file, tensor: false, uploaded: false };
}

/**
 * The shipped sample ``file`` as a view's input, counted in ``data.inputRequest``: null when the fetch failed (its
 * error shown), or when a later load, or a sample no longer wanted (``stillWanted()`` false), has taken over.
 */
export async function loadSample(data, file, stillWanted) {
  const request = ++data.inputRequest;
  let input;
  try {
    input = await fetchSample(file);
  } catch (err) {
    showError(err, `sample ${file}`);
    return null;
  }
  return request === data.inputRequest && stillWanted() ? input : null;
}

/** A file the user chose or dropped, as an input (a `.npy` is sent as a tensor). */
export function fileInput(file) {
  return { blob: file, name: file.name || "your image", tensor: (file.name || "").toLowerCase().endsWith(".npy"), uploaded: true };
}

export class InputPicker {
  /**
   * @param {Element} root the view's element
   * @param {string} prefix the ids' prefix (`adv`: #adv-samples, #adv-file, #adv-input-name)
   * @param {{ onSample: (file: string) => void, onFile: (input: object) => void }} handlers a sample button was
   *   pressed (the view records it in its state, then loads it); a file was chosen or dropped (as an input for the
   *   view's data). The picker keeps nothing: the view draws it with `show`.
   */
  constructor(root, prefix, { onSample, onFile }) {
    this.root = root;
    this.prefix = prefix;
    this.buttons().forEach((button) => button.addEventListener("click", () => onSample(button.dataset.file)));
    const chooser = this.byId("file");
    chooser.addEventListener("change", () => {
      const file = chooser.files?.[0];
      chooser.value = "";
      if (file) onFile(fileInput(file));
    });
    const drop = root.querySelector(".dropzone");
    drop.addEventListener("dragover", (event) => event.preventDefault());
    drop.addEventListener("drop", (event) => {
      const file = event.dataTransfer?.files?.[0];
      if (file) {
        event.preventDefault();
        onFile(fileInput(file));
      }
    });
  }

  byId(name) {
    return this.root.querySelector(`#${this.prefix}-${name}`);
  }

  buttons() {
    return this.root.querySelectorAll(`#${this.prefix}-samples .sample`);
  }

  /**
   * Draw the picker from a view's state and data: the samples ``model`` reads (none hidden without a model), the
   * sample ``file`` pressed (none for "" or an upload), and the name of an uploaded ``input``.
   */
  show({ model, file, input }) {
    const kind = model ? kindOf(model) : null;
    this.buttons().forEach((button) => {
      if (kind) button.hidden = button.dataset.kind !== kind;
      button.setAttribute("aria-pressed", String(Boolean(file) && button.dataset.file === file));
    });
    this.byId("input-name").textContent = input?.uploaded ? `Your file: ${input.name}` : "";
  }

  /** The first sample ``model`` reads (or null). */
  firstSample(model) {
    return this.root.querySelector(`#${this.prefix}-samples .sample[data-kind="${kindOf(model)}"]`)?.dataset.file ?? null;
  }
}
