// The model list and architectures, asked of the API once per page and shared by every page.
import { api, field } from "./api.js";

let listPromise = null;
const architectures = new Map();

/** GET /api/models once: {models, unavailable}. */
function catalogue() {
  if (!listPromise) {
    listPromise = api("/api/models", { label: "Loading the models…" })
      .then((answer) => ({ models: field(answer, "models"), unavailable: field(answer, "unavailable") }))
      .catch((err) => {
        listPromise = null;
        throw err;
      });
  }
  return listPromise;
}

/** Every model the server can run: [{id, name, task, input_shape, ...}] (damaged ones are in listUnavailable). */
export async function listModels() {
  return (await catalogue()).models;
}

/** Models whose stored files cannot be loaded: [{id, name, builtin, problem}]; their routes answer 409. */
export async function listUnavailable() {
  return (await catalogue()).unavailable;
}

export function forgetModels() {
  listPromise = null;
}

/** A model's architecture: per node its id, op, attributes, inputs, output shape, params, MACs, receptive field. */
export function architecture(modelId) {
  if (!architectures.has(modelId)) {
    const promise = api(`/api/models/${encodeURIComponent(modelId)}`, { label: "Loading the architecture…" })
      .catch((err) => {
        architectures.delete(modelId);
        throw err;
      });
    architectures.set(modelId, promise);
  }
  return architectures.get(modelId);
}

/** Fill a <select> with the models, selecting `wanted` when it exists; returns the chosen id. */
export async function fillModelSelect(select, wanted, { filter = () => true } = {}) {
  const models = (await listModels()).filter(filter);
  select.replaceChildren(...models.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.builtin === false ? `${m.name ?? m.id} (uploaded)` : m.name ?? m.id;
    return option;
  }));
  const chosen = models.find((m) => m.id === wanted) ? wanted : models[0]?.id ?? "";
  select.value = chosen;
  return { chosen, models };
}

/** The channel count of a model's input (1 for the digit models). */
export function inputChannels(model) {
  return (model?.input_shape ?? [3])[0];
}

/** The node entries of a model's architecture (GET /api/models/{id}: ModelDetail.architecture.nodes). */
export function archNodes(detail) {
  return field(field(detail, "architecture", "object"), "nodes");
}

/** The attributes of an architecture node (NodeInfo.attributes: the engine's canonical `describe()`). */
export function nodeAttributes(node) {
  return field(node, "attributes", "object");
}
