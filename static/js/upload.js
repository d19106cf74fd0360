// Bring your own model: upload an ONNX file to POST /api/models, show what the importer found (or every
// unsupported operator it refused), and link to the pages that explore it.
import { ApiError, api, clearError, showError } from "./api.js";
import { architecture, forgetModels, listModels, listUnavailable } from "./models.js";
import { $, el } from "./dom.js";

function links(model) {
  const id = encodeURIComponent(model.id);
  const explorer = el("a", { class: "button", href: `/?model=${id}`, text: "Explore it" });
  const row = el("p", { class: "button-row" }, explorer,
    el("a", { class: "button secondary", href: `/receptive-fields?model=${id}`, text: "Receptive fields" }));
  if (model.takes_images) row.append(el("a", { class: "button secondary", href: `/attention?model=${id}`, text: "Attention maps" }));
  return row;
}

function describe(model, arch) {
  const ops = new Map();
  for (const node of arch?.architecture?.nodes ?? []) ops.set(node.op, (ops.get(node.op) ?? 0) + 1);
  const facts = [
    `id ${model.id}`, `input ${model.input_shape.join("×")}`,
    model.num_classes ? `${model.num_classes} outputs` : "output is not a class vector",
    `${model.param_count.toLocaleString()} parameters`,
  ];
  const parts = [el("p", {}, el("strong", { text: model.name }), ` · ${facts.join(" · ")}`)];
  if (ops.size) parts.push(el("p", { class: "small", text: `Layers: ${[...ops].map(([op, n]) => `${n} × ${op}`).join(", ")}` }));
  if (!model.takes_images) {
    parts.push(el("p", { class: "callout info", text: "Its input is not a square 1- or 3-channel image, so it takes raw .npy tensors: in the explorer, upload a .npy file of that shape." }));
  }
  const notes = model.onnx?.notes ?? [];
  if (notes.length) parts.push(el("ul", { class: "small muted" }, ...notes.map((n) => el("li", { text: String(n) }))));
  parts.push(links(model));
  return parts;
}

let chosenFile = null;
const NOTHING_CHOSEN = $("onnx-chosen").textContent;  // the server's limit, written by the template
const MAX_MIB = $("upload-form").dataset.maxMib;
function sizeText(bytes) {
  return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

// What the form refuses before sending anything is said just under its button (#upload-problem, role="alert"; the
// browser's own `required` bubble cannot show on the hidden file input, so the form is `novalidate`).
const WHAT_TO_CHOOSE = `an ONNX file (.onnx) with its weights inside it (not in ONNX external data), at most ${MAX_MIB} MiB`;
const NOT_ONNX = [
  [/\.(pt|pth|ckpt)$/i, "a PyTorch file, not an ONNX file: export the model with torch.onnx.export(model, " +
    "example_input, \"model.onnx\") and choose the .onnx file it writes"],
  [/\.(data|bin|weights)$/i, "not an ONNX file: if it holds an ONNX model's weights (external data), save the " +
    "model as one file with onnx.save_model(model, \"model.onnx\", save_as_external_data=False) and choose that"],
];

/** Why `file` cannot be sent (null when it can). */
function problemWith(file) {
  if (!file) return `Choose a model file first: ${WHAT_TO_CHOOSE}. Use “Choose an .onnx file…” above, or drop the file on the dashed box.`;
  if (!/\.onnx$/i.test(file.name)) {
    const why = NOT_ONNX.find(([pattern]) => pattern.test(file.name))?.[1]
      ?? "not an ONNX file: choose a file whose name ends in .onnx (from PyTorch: torch.onnx.export)";
    return `“${file.name}” is ${why}.`;
  }
  if (file.size === 0) return `“${file.name}” is empty (0 bytes): export the model again and choose the new file.`;
  return null;
}

function showProblem(text) {
  const input = $("onnx-file");
  $("upload-problem").textContent = text ?? "";
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

function choose(file) {
  chosenFile = file;
  $("onnx-chosen").textContent = file ? `${file.name} (${sizeText(file.size)})` : NOTHING_CHOSEN;
  showProblem(null);
}

$("onnx-file").addEventListener("change", () => choose($("onnx-file").files?.[0] ?? null));
const drop = $("onnx-drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const files = e.dataTransfer?.files;
  if (!files?.[0]) return;
  try {
    $("onnx-file").files = files;  // the input shows (and a screen reader hears) the dropped file too
  } catch {
    // an older browser cannot set it: chosenFile alone is sent
  }
  choose(files[0]);
});

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  const result = $("upload-result");
  const problem = problemWith(chosenFile);
  showProblem(problem);
  if (problem) {
    result.replaceChildren();  // a previous upload's result would read as this file's
    $("onnx-file").focus({ preventScroll: true });  // the dashed box turns red; the message below the button
    $("upload-problem").scrollIntoView({ block: "nearest" });  // is in view, not scrolled away for the input's sake
    return;
  }
  const data = new FormData();
  data.append("file", chosenFile, chosenFile.name);
  if ($("onnx-name").value.trim()) data.append("name", $("onnx-name").value.trim());
  if ($("onnx-labels").value.trim()) data.append("labels", $("onnx-labels").value);
  data.append("preprocessing", document.querySelector('input[name="preprocessing"]:checked').value);
  $("upload-button").disabled = true;
  result.replaceChildren(el("p", { class: "muted", text: `Importing ${chosenFile.name}…` }));
  try {
    const model = await api("/api/models", { body: data, label: "Importing the model…" });
    forgetModels();
    const arch = await architecture(model.id).catch(() => null);
    result.replaceChildren(
      el("p", { class: "badge ok", text: model.created ? "Imported" : "Already here (the same file was uploaded before)" }),
      ...describe(model, arch));
    await listUploaded();
  } catch (err) {
    const items = err instanceof ApiError ? err.body?.unsupported ?? [] : [];
    result.replaceChildren(el("p", { class: "callout", text: err instanceof ApiError ? err.detail : String(err) }));
    if (items.length) {
      result.append(el("table", { class: "data" },
        el("thead", {}, el("tr", {}, el("th", { text: "unsupported operator" }), el("th", { text: "ONNX node" }))),
        el("tbody", {}, ...items.map((u) => el("tr", {}, el("td", { text: u.op_type }), el("td", { text: u.node }))))));
    }
    showError(err, "importing the model");
  } finally {
    $("upload-button").disabled = false;
  }
});

function deleteButton(model) {
  const name = model.name ?? model.id;
  const remove = el("button", { type: "button", class: "secondary", text: "Delete", "aria-label": `Delete ${name}` });
  remove.addEventListener("click", async () => {
    if (!window.confirm(`Delete ${name} from this server?`)) return;
    try {
      await api(`/api/models/${encodeURIComponent(model.id)}`, { method: "DELETE", as: "response", label: "Deleting…" });
      forgetModels();
      await listUploaded();
    } catch (err) {
      showError(err, "deleting");
    }
  });
  return remove;
}

/** A model whose stored files cannot be loaded: what is wrong, and a Delete button when it is yours (its pages
 * answer 409). */
function damagedEntry(model) {
  return el("div", { class: "uploaded-model unavailable" },
    el("p", {}, el("strong", { text: model.name ?? model.id }), " · cannot be loaded"),
    el("p", { class: "small callout", text: `${model.problem}. ${model.owned ? "Delete it and upload" : "Upload"} the ONNX file again.` }),
    model.owned ? el("p", { class: "button-row" }, deleteButton(model)) : "");
}

// Uploaded models this browser may use: its own (with a Delete button) and the ones the lecturer shared.
async function listUploaded() {
  const box = $("uploaded");
  try {
    const models = (await listModels()).filter((m) => !m.builtin);
    const damaged = (await listUnavailable()).filter((m) => !m.builtin);
    if (!models.length && !damaged.length) {
      box.replaceChildren(el("p", { class: "small muted", text: "None yet." }));
      return;
    }
    box.replaceChildren(...models.map((model) => {
      const row = links(model);
      if (model.owned) row.append(deleteButton(model)); // the server refuses others' deletes: offer only ours
      const whose = model.owned ? (model.shared ? " · yours, shared with everyone" : " · yours")
        : model.shared ? " · shared by the lecturer" : "";
      return el("div", { class: "uploaded-model" },
        el("p", {}, el("strong", { text: model.name }),
          ` · ${model.input_shape.join("×")} · ${model.param_count.toLocaleString()} parameters${whose}`),
        row);
    }), ...damaged.map(damagedEntry));
  } catch (err) {
    showError(err, "listing the models");
  }
}

listUploaded();
