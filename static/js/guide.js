// The explorer's first-visit guide: four short steps for a student alone (what a feature map is, what the colours
// mean, what the numbers under a map mean, how to pick a neuron). It opens once per browser (unless the page is in
// projector or lecture mode: a lecturer is presenting), can be closed at any step, and the "Guide" button reopens
// it. It floats over the page (position: fixed), so opening it or stepping moves nothing under it.
import { $, el } from "./dom.js";

const SEEN_KEY = "cnn-vis-guide-seen";

const STEPS = [
  {
    title: "Each small picture is a feature map",
    text: "A convolution slides one small filter over its whole input and writes its answer at every position: one " +
      "picture per filter. A column is one layer (its name, what it does, its shape channels × height × width); its " +
      "pictures are its channels. Early layers answer to edges and colours, later ones to larger parts.",
    target: () => document.querySelector('.layer.loaded:not([data-node="input"]) .maps') ?? $("network"),
  },
  {
    title: "The colours are numbers",
    text: "Dark is a small number, bright a large one (the colour bar just above the maps; with the signed blue–red " +
      "scale, white is 0). Each map is coloured from its own smallest to its largest number unless you choose one " +
      "range for the whole layer.",
    target: () => $("map-legend") ?? $("scale"),
  },
  {
    title: "The numbers under a map",
    text: "“−0.43 … 2.81” is the smallest and the largest number anywhere in the layer. “83% zeros” is the share of " +
      "neurons that are exactly 0: a ReLU switched them off (their input was negative).",
    target: () => document.querySelector('.layer.loaded:not([data-node="input"]) .stats') ?? $("network"),
  },
  {
    title: "Click a neuron",
    text: "Click any pixel of a map: the detail below shows how that one neuron was computed, with the real numbers " +
      "(its window × the filter's weights), and its receptive field — the patch of the input it sees — is outlined " +
      "on every earlier layer. Play (or Space) walks through the layers one by one.",
    target: () => document.querySelector(".layer.loaded canvas.tiles") ?? $("network"),
  },
];

export class Guide {
  constructor() {
    this.step = 0;
    this.target = null;
    this.box = el("section", { class: "guide", id: "guide", role: "dialog", "aria-modal": "false",
      "aria-labelledby": "guide-title", hidden: true });
    this.counter = el("p", { class: "guide-count small muted" });
    this.title = el("h2", { id: "guide-title" });
    this.text = el("p", { class: "guide-text" });
    this.back = el("button", { type: "button", class: "secondary", text: "Back" });
    this.next = el("button", { type: "button", text: "Next" });
    this.close = el("button", { type: "button", class: "quiet guide-close", "aria-label": "Close the guide", text: "✕" });
    this.box.append(this.close, this.counter, this.title, this.text, el("div", { class: "button-row" }, this.back, this.next));
    document.body.append(this.box);
    this.back.addEventListener("click", () => this.show(this.step - 1));
    this.next.addEventListener("click", () => (this.step === STEPS.length - 1 ? this.hide() : this.show(this.step + 1)));
    this.close.addEventListener("click", () => this.hide());
    this.box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault(); // the page's own Esc (leave a detail) is not meant
        this.hide();
      }
    });
  }

  get open() {
    return !this.box.hidden;
  }

  /** Open at the first step if this browser has not seen the guide (and no one is presenting). */
  openIfNew({ presenting = false } = {}) {
    let seen = false;
    try {
      seen = window.localStorage.getItem(SEEN_KEY) === "1";
    } catch {
      seen = true; // no storage: do not nag on every visit
    }
    if (!seen && !presenting) this.show(0);
  }

  show(index) {
    this.step = Math.max(0, Math.min(STEPS.length - 1, index));
    const step = STEPS[this.step];
    this.counter.textContent = `Guide · ${this.step + 1} of ${STEPS.length}`;
    this.title.textContent = step.title;
    this.text.textContent = step.text;
    this.back.disabled = this.step === 0;
    this.next.textContent = this.step === STEPS.length - 1 ? "Done" : "Next";
    this.box.hidden = false;
    this.mark(step.target());
    this.next.focus({ preventScroll: true });
  }

  hide() {
    this.box.hidden = true;
    this.mark(null);
    try {
      window.localStorage.setItem(SEEN_KEY, "1");
    } catch {
      // storage off: the guide may open again next time
    }
  }

  mark(target) {
    this.target?.classList.remove("guide-target");
    this.target = target;
    target?.classList.add("guide-target");
  }
}
