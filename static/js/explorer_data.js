// What the explorer knows that is not in its address (the state): the API's answers, the current input and what the
// page is doing with them, in one `data` object; and the loads that fill it. Each load calls `update()` (render) once
// it has changed `data`; a late answer, for an input or a model that is no longer the current one, is dropped.
import { api, field } from "./api.js";
import { architecture, archNodes, listModels } from "./models.js";

export function createData() {
  return {
    models: [], // GET /api/models: every model the server runs
    arch: null, // GET /api/models/{id} of the state's model (ModelDetail): its architecture, labels, preprocessing
    archById: new Map(), // its architecture's nodes by id
    input: null, // the current input: { blob, name, url (an object URL of the picture; null for a .npy), unreadable }
    run: null, // POST /api/models/{id}/activations for the input (null while another model's input is sent again)
    runInput: null, // the input `run` is the answer for (the last input's, until the new answer arrives)
    classes: null, // the prediction's top classes: the run's, or POST /api/models/{id}/predict's
    kind: null, // { input, model, kind }: what kind of picture the input is, as checked for that input and model
    atlas: null, // Map model id -> Set of its layers with top examples (GET /api/top-examples/models), once asked
    empty: "", // no input: the message the strip shows in its place (why), else ""
    error: { err: null, context: "" }, // the banner: a new object each time a load sets it (err null: cleared)
    timing: { startedAt: 0, responseMs: null, firstMapMs: null }, // this input: chosen, answered, first maps drawn
    // what the page shows besides the state: the probabilities explained in the detail, the folded sidebar opened,
    // the step (`reveal`: reached playing, the later layers dimmed; `ended`: Play ran to the last step and the strip
    // marks no step), and how often the user asked for a step, the detail or the guide (each brought into view)
    softmax: false,
    sidebar: false,
    play: { reveal: false, ended: false },
    asked: { step: 0, detail: 0, guide: 0 },
    resized: 0, // the window or the panels above the maps changed size this many times (the maps' height follows)
  };
}

/** The model's entry in GET /api/models (its task, input shape, preprocessing, source), else its architecture. */
export function modelInfo(state, data) {
  return data.models.find((m) => m.id === state.values.model) ?? data.arch;
}

/** Whether a picture has colour rather than grey levels only (its pixels at 64 × 64); null if it cannot be read. */
async function hasColour(blob) {
  try {
    const bitmap = await createImageBitmap(blob, { resizeWidth: 64, resizeHeight: 64 });
    const ctx = new OffscreenCanvas(64, 64).getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close?.();
    const { data } = ctx.getImageData(0, 0, 64, 64);
    let coloured = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 24) coloured += 1;
    }
    return coloured > 0.02 * 64 * 64;
  } catch {
    return null;
  }
}

/** The input's kind, as far as the page knows: how it was made (pad, shipped digit, sample), else its colours. */
async function inputKind(blob, name) {
  if (name === "your drawing") return "drawing";
  if (name.startsWith("shipped digit")) return "digit";
  if (name.toLowerCase().endsWith(".npy")) return null; // a tensor: not a picture
  const sample = [...document.querySelectorAll("#samples .sample")].find((b) => b.dataset.file === name);
  if (sample) return sample.dataset.kind === "digit" ? "digit" : "photo";
  const colour = await hasColour(blob);
  return colour === null ? null : colour ? "colour" : "grey";
}

/** The image file name the API is sent (a drawing has none: it is a PNG). */
function fileName(name) {
  return name.includes(".") ? name : `${name}.png`;
}

/**
 * The loads of the explorer: each fills `data` and calls `update()`. `runs` counts the inputs sent: an answer
 * for an earlier one (or for the model before) is dropped.
 */
export function createLoads(state, data, update) {
  let runs = 0;
  let models = 0;

  const failed = (err, context) => {
    data.error = { err, context };
  };

  /** A new input is on its way: the clock starts, and any answer still expected is dropped. */
  function start() {
    data.timing = { startedAt: performance.now(), responseMs: null, firstMapMs: null };
    runs += 1;
    return runs;
  }

  function setInput(input) {
    if (data.input?.url) URL.revokeObjectURL(data.input.url);
    data.input = input;
  }

  /** Back to no input: no maps, no prediction, no detail; `message` says why. */
  function noInput(message) {
    setInput(null);
    Object.assign(data, { run: null, runInput: null, classes: null, kind: null, empty: message, softmax: false });
    data.timing = { startedAt: 0, responseMs: null, firstMapMs: null };
  }

  /** The prediction of a model whose activations came without classes (POST /predict). */
  async function predict(blob, name, token) {
    const form = new FormData();
    form.append("image", blob, fileName(name));
    try {
      const answer = await api(`/api/models/${encodeURIComponent(state.values.model)}/predict`, { body: form, label: "Predicting…" });
      if (token !== runs) return;
      data.classes = field(answer, "classes"); // PredictResponse.classes
    } catch (err) {
      if (token !== runs) return;
      data.classes = null;
      failed(err, "predicting");
    }
    update();
  }

  /** Whether the input is the kind of picture the model was trained on: its kind, for the note beside the answer. */
  async function kindOf(input, token) {
    const kind = await inputKind(input.blob, input.name);
    if (token !== runs) return;
    data.kind = { input, model: state.values.model, kind };
    update();
  }

  /** Send an image (or a .npy tensor) to the model: every node's activation, then the columns and the prediction. */
  async function image(blob, name, token = start()) {
    const url = name.toLowerCase().endsWith(".npy") ? null : URL.createObjectURL(blob);
    setInput({ blob, name, url, unreadable: false });
    Object.assign(data, { kind: null, empty: "" });
    data.error = { err: null, context: "" };
    update();
    const tensor = name.toLowerCase().endsWith(".npy");
    const form = new FormData();
    form.append("image", blob, fileName(name));
    const model = state.values.model;
    let answer;
    try {
      answer = await api(`/api/models/${encodeURIComponent(model)}/activations`, {
        body: tensor ? blob : form, headers: tensor ? { "Content-Type": "application/x-npy" } : {},
        label: "Running the network…",
      });
    } catch (err) {
      if (token !== runs) return;
      failed(err, `running ${model} on ${name}`);
      // nothing of the previous image may stay on screen as if it were this one's
      noInput(`No result: ${name} could not be read (the message above says why). Pick another image.`);
      update();
      return;
    }
    if (token !== runs || model !== state.values.model) return;
    const input = data.input;
    Object.assign(data, { run: answer, runInput: input, softmax: false });
    data.play = { reveal: false, ended: false };
    data.timing.responseMs = performance.now() - data.timing.startedAt;
    if (answer.classes) data.classes = answer.classes;
    update();
    if (!answer.classes) predict(blob, name, token);
    kindOf(input, token);
  }

  /** Fetch an input (a sample, a shipped digit), then send it. */
  async function fetched(url, name, label, context) {
    const token = start();
    let blob;
    try {
      blob = await api(url, { as: "blob", label });
    } catch (err) {
      if (token !== runs) return;
      failed(err, context);
      update();
      return;
    }
    if (token === runs) await image(blob, name, token);
  }

  return {
    image,
    noInput,
    /** Drop any answer still expected (the input it was for is gone). */
    cancel() {
      runs += 1;
    },
    sample: (file) => fetched(`/static/samples/${encodeURIComponent(file)}`, file, "Loading the sample…", `sample ${file}`),
    /** One of the shipped digits (the atlas's top examples link here with it), at its own 28 × 28 pixels. */
    digit: (index) => fetched(`/api/digits/${index}.png?scale=1`, `shipped digit #${index}`, "Loading the digit…",
      `shipped digit ${index}`),

    /** GET /api/models; false when there is no model to show (the error is in `data`). */
    async models() {
      try {
        data.models = await listModels();
      } catch (err) {
        failed(err, "loading the models");
        return false;
      }
      if (!data.models.length) failed("the server offers no models yet");
      return data.models.length > 0;
    },

    /**
     * The state's model: its architecture (the run of another model's input is dropped). false when a newer choice
     * came meanwhile or it failed.
     */
    async model() {
      const id = state.values.model;
      const token = ++models;
      runs += 1;
      Object.assign(data, { arch: null, archById: new Map(), run: null, runInput: null, kind: null, softmax: false });
      update();
      try {
        const arch = await architecture(id);
        if (token !== models) return false;
        data.arch = arch;
        data.archById = new Map(archNodes(arch).map((n) => [n.id, n]));
        return true;
      } catch (err) {
        if (token === models) failed(err);
        return false;
      }
    },

    /** Which layers of which models have an atlas (top examples), once. */
    async atlas() {
      if (data.atlas) return;
      data.atlas = new Map();
      try {
        const answer = await api("/api/top-examples/models", { label: "Finding the atlas…" });
        data.atlas = new Map(answer.models.map((m) => [m.id, new Set(m.layers.map((l) => l.node))]));
      } catch {
        // no atlas: no link
      }
      update();
    },
  };
}
