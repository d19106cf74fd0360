// One state object per page, saved to the URL's query string (TensorFlow Playground's idea): any view is a
// shareable link, and every redraw starts from the state. Types come from the defaults.

function parseValue(raw, fallback) {
  if (typeof fallback === "number") {
    const value = Number(raw);
    return Number.isFinite(value) ? value : fallback;
  }
  if (typeof fallback === "boolean") return raw === "1" || raw === "true";
  if (Array.isArray(fallback)) return raw === "" ? [] : raw.split(",");
  return raw;
}

function formatValue(value) {
  if (typeof value === "boolean") return value ? "1" : "0";
  if (Array.isArray(value)) return value.join(",");
  return String(value);
}

/**
 * `createState(defaults, onChange)` -> { values, set(patch, {push}), reset() }.
 * Values equal to their default stay out of the URL, so links stay short.
 */
export function createState(defaults, onChange = () => {}) {
  const values = { ...defaults };
  const query = new URLSearchParams(window.location.search);
  for (const key of Object.keys(defaults)) {
    if (query.has(key)) values[key] = parseValue(query.get(key), defaults[key]);
  }

  function writeUrl(push) {
    // keys this state does not own stay: a page may keep several states in one URL (the learned page's views)
    const params = new URLSearchParams(window.location.search);
    for (const [key, value] of Object.entries(values)) {
      if (formatValue(value) !== formatValue(defaults[key])) params.set(key, formatValue(value));
      else params.delete(key);
    }
    const search = params.toString();
    const url = `${window.location.pathname}${search ? `?${search}` : ""}${window.location.hash}`;
    if (url !== `${window.location.pathname}${window.location.search}${window.location.hash}`) {
      window.history[push ? "pushState" : "replaceState"](null, "", url);
    }
  }

  const state = {
    values,
    set(patch, { push = false, silent = false } = {}) {
      const changed = Object.keys(patch).filter((k) => formatValue(values[k]) !== formatValue(patch[k]));
      Object.assign(values, patch);
      writeUrl(push);
      if (changed.length && !silent) onChange(changed, values);
      return changed;
    },
  };
  window.addEventListener("popstate", () => {
    const fresh = new URLSearchParams(window.location.search);
    const patch = {};
    for (const key of Object.keys(defaults)) {
      patch[key] = fresh.has(key) ? parseValue(fresh.get(key), defaults[key]) : defaults[key];
    }
    const changed = Object.keys(patch).filter((k) => formatValue(values[k]) !== formatValue(patch[k]));
    Object.assign(values, patch);
    if (changed.length) onChange(changed, values);
  });
  writeUrl(false);
  return state;
}

/** Keep a form control and a state key in step: the control shows the state, and edits set it. */
export function bindControl(state, key, element, { event = "input", parse } = {}) {
  const read = parse || ((el) => (el.type === "checkbox" ? el.checked : el.type === "range" || el.type === "number" ? Number(el.value) : el.value));
  const show = () => {
    if (element.type === "checkbox") element.checked = Boolean(state.values[key]);
    else element.value = state.values[key];
  };
  show();
  element.addEventListener(event, () => state.set({ [key]: read(element) }));
  return show;
}
