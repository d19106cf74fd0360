// What the network learned: four views on one page, one ES module each, mounted the first time it is shown.
// The view is in the URL (?view=...), so a link opens the same view; each module keeps its own state there too.
import { createState } from "./state.js";
import * as adversarial from "./learned_adversarial.js";
import * as backprop from "./learned_backprop.js";
import * as channels from "./learned_channels.js";
import * as representations from "./learned_representations.js";

const VIEWS = { channels, representations, backprop, adversarial };
const mounted = new Set();

const state = createState({ view: "channels" }, () => show(state.values.view));

function show(name) {
  const view = VIEWS[name] ? name : "channels";
  for (const key of Object.keys(VIEWS)) {
    const selected = key === view;
    document.getElementById(`view-${key}`).hidden = !selected;
    const tab = document.getElementById(`tab-${key}`);
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  if (!mounted.has(view)) {
    mounted.add(view);
    VIEWS[view].mount(document.getElementById(`view-${view}`));
  }
}

for (const tab of document.querySelectorAll(".learned-tabs [data-view]")) {
  tab.addEventListener("click", () => state.set({ view: tab.dataset.view }, { push: true }));
}
show(state.values.view);
