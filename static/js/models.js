// The model list and architectures, asked of the API once per page and shared by every page.
import { api } from "./api.js";

let listPromise = null;
const architectures = new Map();

/** Every model the server offers: [{id, name, task, input_shape, ...}]. */
export function listModels() {
  if (!listPromise) {
    listPromise = api("/api/models", { label: "Loading the models…" })
      .then((answer) => (Array.isArray(answer) ? answer : answer.models ?? []))
      .catch((err) => {
        listPromise = null;
        throw err;
      });
  }
  return listPromise;
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

/** Node entries of an architecture, whatever the exact field name. */
export function archNodes(arch) {
  return arch?.architecture?.nodes ?? arch?.nodes ?? [];
}

/** The attributes of an architecture node (the engine's canonical `describe()`). */
export function nodeAttributes(node) {
  return node?.attributes ?? node?.attrs ?? {};
}
