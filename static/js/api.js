// Every number the pages show comes from the REST API through `api()`. It shows the progress indicator
// for any wait over 200 ms, and turns a refusal into an ApiError carrying the API's own `detail`.

const BUSY_DELAY_MS = 200;
let pending = 0;
let busyTimer = null;
const labels = new Map();
let nextId = 0;

export class ApiError extends Error {
  constructor(status, detail, body = null) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

function busyElements() {
  return { box: document.getElementById("busy"), text: document.getElementById("busy-text") };
}

function refreshBusy() {
  const { box, text } = busyElements();
  if (!box) return;
  if (pending === 0) {
    clearTimeout(busyTimer);
    busyTimer = null;
    box.hidden = true;
    document.body.removeAttribute("aria-busy");
    return;
  }
  const last = [...labels.values()].pop();
  if (text && last) text.textContent = last;
  if (box.hidden && busyTimer === null) {
    busyTimer = setTimeout(() => {
      busyTimer = null;
      if (pending > 0) {
        box.hidden = false;
        document.body.setAttribute("aria-busy", "true");
      }
    }, BUSY_DELAY_MS);
  }
}

/** Run `work` (a promise-returning function) with the progress indicator labelled `label`. */
export async function busy(label, work) {
  const id = nextId++;
  pending += 1;
  labels.set(id, label || "Working…");
  refreshBusy();
  try {
    return await work();
  } finally {
    pending -= 1;
    labels.delete(id);
    refreshBusy();
  }
}

async function errorFrom(response) {
  let detail = `${response.status} ${response.statusText}`;
  let body = null;
  try {
    body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
    else if (body.detail !== undefined) detail = JSON.stringify(body.detail);
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 413 && !body) detail = "the upload is too large for this server";
  return new ApiError(response.status, detail, body);
}

/**
 * Call the API. `json` sends a JSON body; `body` sends FormData, a Blob or bytes as they are.
 * `as` picks the result: "json" (default), "blob", "arrayBuffer", "response".
 */
export async function api(path, { method, json, body, headers = {}, as = "json", label, signal } = {}) {
  const init = { method: method || (json !== undefined || body !== undefined ? "POST" : "GET"), headers: { ...headers }, signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  return busy(label, async () => {
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, `the server did not answer (${err.message}); is it still running?`);
    }
    if (!response.ok) throw await errorFrom(response);
    if (as === "response") return response;
    if (as === "blob") return response.blob();
    if (as === "arrayBuffer") return response.arrayBuffer();
    return response.json();
  });
}

/**
 * The field `name` of an API answer, one the API always sends: a list (`kind` "list") or an object ("object").
 * Anything else throws an error naming the field, so that an answer of another shape (a server of another
 * version) is shown as an error rather than papered over with a default.
 */
export function field(answer, name, kind = "list") {
  const value = answer?.[name];
  const fits = kind === "list" ? Array.isArray(value) : value !== null && typeof value === "object" && !Array.isArray(value);
  if (!fits) {
    throw new Error(`the server's answer has no ${kind} "${name}", which this page needs: the page and the server ` +
      "are of different versions (reload the page; if that does not help, the server needs updating)");
  }
  return value;
}

/** Show an error (an ApiError's detail, or any message) in the page's alert banner. */
export function showError(err, context = "") {
  if (err && err.name === "AbortError") return;
  const banner = document.getElementById("error");
  const text = document.getElementById("error-text");
  const message = err instanceof ApiError ? err.detail : (err && err.message) || String(err);
  if (!banner || !text) {
    console.warn(message);
    return;
  }
  text.textContent = context ? `${context}: ${message}` : message;
  banner.hidden = false;
}

export function clearError() {
  const banner = document.getElementById("error");
  if (banner) banner.hidden = true;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("error-close")?.addEventListener("click", clearError);
});
