// What every page shares for a lecture hall: projector mode (type large enough for the back row) and the keys a
// presenter's clicker sends. A page says what its steps are with `presenterKeys`; this module maps the keys:
//   → PageDown next · ← PageUp previous · Space play/pause · Home first · End last · Esc leave · ? this legend
// and keeps PageDown, PageUp, Space, Home and End from scrolling the page while a page has steps.
import { $ } from "./dom.js";

const STORAGE_KEY = "cnn-vis-projector";
const registrations = [];

/**
 * Give the clicker keys to a page (or one view of it): `{ name, next, prev, toggle, first, last, escape, active,
 * ignore }`. `name` says what a step is ("the layers"), shown in the legend; `active()` (default: always) says
 * whether these steps apply now (a hidden tab's do not); `ignore` is a selector of elements that keep their own
 * keys (a canvas whose arrows move a neuron). The most recent active registration wins. Returns an unregister
 * function.
 */
export function presenterKeys(keys) {
  const entry = { active: () => true, ...keys };
  registrations.push(entry);
  refreshLegend();
  return () => {
    const index = registrations.indexOf(entry);
    if (index >= 0) registrations.splice(index, 1);
    refreshLegend();
  };
}

/**
 * An Animator's steps for `presenterKeys`: each key pauses, then steps; Space plays or pauses. `ready()` (default:
 * always) says whether there is anything to step yet (a pass still being computed has not).
 */
export function animatorSteps(animator, ready = () => true) {
  const stepBy = (work) => () => {
    if (!ready()) return;
    animator.pause();
    work();
  };
  return {
    next: stepBy(() => animator.next()),
    prev: stepBy(() => animator.prev()),
    first: stepBy(() => animator.goto(0)),
    last: stepBy(() => animator.goto(animator.count - 1)),
    toggle: () => { if (ready()) animator.toggle(); },
  };
}

function current() {
  for (let i = registrations.length - 1; i >= 0; i -= 1) if (registrations[i].active()) return registrations[i];
  return null;
}

const ACTIONS = {
  ArrowRight: "next", PageDown: "next", ArrowLeft: "prev", PageUp: "prev",
  " ": "toggle", k: "toggle", Home: "first", End: "last", Escape: "escape",
};

function ownKeys(target, keys) {
  if (!(target instanceof Element)) return false;
  if (target.closest("input, select, textarea, [contenteditable=''], [contenteditable=true], dialog")) return true;
  return Boolean(keys.ignore && target.closest(keys.ignore));
}

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || event.defaultPrevented) return;
  if (event.key === "?" && !ownKeys(event.target, {})) {
    event.preventDefault();
    toggleLegend();
    return;
  }
  const keys = current();
  const action = ACTIONS[event.key];
  if (!keys || !action || ownKeys(event.target, keys)) return;
  // Space on a focused button or link presses it (the browser's own meaning); so does Enter
  if (action === "toggle" && event.target instanceof Element && event.target.closest("button, a, summary, [role=button], [role=tab]")) return;
  const work = keys[action];
  if (!work) {
    // a key this page gives no meaning: PageDown and PageUp still must not scroll a page that has steps
    if (event.key === "PageDown" || event.key === "PageUp" || event.key === " ") event.preventDefault();
    return;
  }
  event.preventDefault();
  work();
});

// --- the key legend ---------------------------------------------------------------------------------------------
function refreshLegend() {
  const what = $("keys-steps");
  if (!what) return;
  const keys = current();
  what.textContent = keys?.name ? `On this page the keys step through ${keys.name}.` : "This page has no steps: the keys scroll it.";
}

function toggleLegend() {
  const dialog = $("keys-legend");
  if (!dialog) return;
  if (dialog.open) dialog.close();
  else {
    refreshLegend();
    dialog.showModal();
  }
}

$("keys-button")?.addEventListener("click", toggleLegend);
$("keys-close")?.addEventListener("click", () => $("keys-legend").close());

// --- projector mode ---------------------------------------------------------------------------------------------
/** Whether projector mode is on (the early script in <head> set it before the first paint). */
export function projectorOn() {
  return document.documentElement.classList.contains("projector");
}

function withProjector(href, on) {
  const url = new URL(href, window.location.href);
  if (url.origin !== window.location.origin || url.pathname.startsWith("/docs") || url.pathname.startsWith("/api")) return href;
  if (on) url.searchParams.set("projector", "1");
  else url.searchParams.delete("projector");
  return `${url.pathname}${url.search}${url.hash}`;
}

function applyProjector(on) {
  document.documentElement.classList.toggle("projector", on);
  const button = $("projector-toggle");
  button?.setAttribute("aria-pressed", String(on));
  try {
    window.sessionStorage.setItem(STORAGE_KEY, on ? "1" : "0");
  } catch {
    // storage may be off: the address still carries the mode
  }
  // the address and the links to the other pages carry the mode, so a shared link or the next page keep it
  const here = withProjector(window.location.href, on);
  if (here !== `${window.location.pathname}${window.location.search}${window.location.hash}`) window.history.replaceState(window.history.state, "", here);
  for (const link of document.querySelectorAll(".site-header a[href]")) link.setAttribute("href", withProjector(link.getAttribute("href"), on));
  window.dispatchEvent(new CustomEvent("projectorchange", { detail: { on } }));
}

$("projector-toggle")?.addEventListener("click", () => applyProjector(!projectorOn()));
applyProjector(projectorOn());
