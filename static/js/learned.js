// What the network learned: four views on one page, one ES module each, mounted the first time it is shown.
// The view is in the URL (?view=...), so a link opens the same view; each module keeps its own state there too.
// Each follows state -> data -> render (docs/frontend.md, "The other pages").
import { presenterKeys } from "./presenter.js";
import { createState } from "./state.js";
import * as adversarial from "./learned_adversarial.js";
import * as backprop from "./learned_backprop.js";
import * as channels from "./learned_channels.js";
import * as representations from "./learned_representations.js";

const VIEWS = { channels, representations, backprop, adversarial };
// what the page knows: which views are mounted (a view asks the API for its own data the first time it is shown)
const data = { mounted: new Set() };

const state = createState({ view: "channels" }, () => render(state, data));

/** The tabs and the view the state names (mounted the first time); calling it again changes nothing. */
function render(state, data) {
  const view = VIEWS[state.values.view] ? state.values.view : "channels";
  for (const key of Object.keys(VIEWS)) {
    const selected = key === view;
    document.getElementById(`view-${key}`).hidden = !selected;
    const tab = document.getElementById(`tab-${key}`);
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  if (!data.mounted.has(view)) {
    data.mounted.add(view);
    VIEWS[view].mount(document.getElementById(`view-${view}`));
  }
}

for (const tab of document.querySelectorAll(".learned-tabs [data-view]")) {
  tab.addEventListener("click", () => state.set({ view: tab.dataset.view }, { push: true }));
}

// the clicker's keys (presenter.js): the page's views, in the tabs' order. Registered before any view is mounted,
// so a view with steps of its own (backpropagation's pass) takes the keys while it is shown.
const names = Object.keys(VIEWS);
const showView = (pick) => () => {
  const at = Math.max(0, names.indexOf(state.values.view));
  const view = names[Math.max(0, Math.min(names.length - 1, pick(at)))];
  if (view !== state.values.view) state.set({ view }, { push: true });
};
presenterKeys({
  name: "the page's views, one tab per step",
  next: showView((at) => at + 1),
  prev: showView((at) => at - 1),
  first: showView(() => 0),
  last: showView(() => names.length - 1),
});
render(state, data);
