// What a page's render(state, data) shares: redraw a costly part only when what it is drawn from changed (so that
// calling the render twice changes nothing), and the model menu drawn from the model list the page loaded.

/**
 * `const fresh = changeTracker()`; `fresh(part, [values])` is true (and remembers the values) when they differ (===)
 * from those of the last call for that part, the first call included; false when they are the same.
 */
export function changeTracker() {
  const last = new Map();
  return function fresh(part, values) {
    const before = last.get(part);
    if (before && before.length === values.length && before.every((v, i) => v === values[i])) return false;
    last.set(part, [...values]);
    return true;
  };
}

/** The model to show: `wanted` when the list has it, else the list's first ("" for an empty list). */
export function chooseModel(models, wanted) {
  return models.some((m) => m.id === wanted) ? wanted : models[0]?.id ?? "";
}

const drawnLists = new WeakMap(); // select -> the model list its options were made from

/**
 * A model menu (a <select>) showing `models` (GET /api/models' list), with `value` selected. The options are made
 * once per list; an empty list (not loaded yet) leaves the menu as it is.
 */
export function showModelOptions(select, models, value) {
  if (!models?.length) return;
  if (drawnLists.get(select) !== models) {
    drawnLists.set(select, models);
    select.replaceChildren(...models.map((m) => new Option(m.builtin === false ? `${m.name ?? m.id} (uploaded)` : m.name ?? m.id, m.id)));
  }
  if (select.value !== value) select.value = value;
}

const shownValues = new WeakMap(); // form control -> the state value it last showed

/**
 * Show a state value in a form control (`checked` for a checkbox) only when the value differs from the one the
 * control last showed: a render for another reason (an answer arriving) never overwrites what the user is typing or
 * dragging before its change event has set the state.
 */
export function showControl(element, value, { checked = false } = {}) {
  if (shownValues.has(element) && shownValues.get(element) === value) return;
  shownValues.set(element, value);
  if (checked) element.checked = Boolean(value);
  else element.value = String(value);
}
