// The DOM helpers every page shares: find an element by id, build HTML and SVG elements, escape text that goes
// into HTML. Names from uploaded models (labels, node ids) are user text: put them in with `text` or as children
// (never as `html`), or through `escapeHtml`.

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const SVG_NS = "http://www.w3.org/2000/svg";

/** The element with this id in the document. */
export const $ = (id) => document.getElementById(id);

/**
 * `$` limited to one part of the page (a view mounted later keeps its ids inside its root): `within(() => root)`
 * reads the root at each call, so it may be assigned after the finder is made.
 */
export function within(getRoot) {
  return (id) => getRoot().querySelector(`#${CSS.escape(id)}`);
}

/** Text made safe to put inside HTML markup. */
export function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

function setAttributes(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.setAttribute("class", v);
    else if (k === "text") node.textContent = v;
    else if (k === "html") node.innerHTML = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
}

/**
 * An HTML element: `el("p", { class: "small", text: "hello" })`, `el("ul", {}, item1, item2)`.
 * Attributes "class", "text" (textContent) and "html" (trusted markup only) are special; a value of
 * undefined, null or false leaves the attribute out. Children are nodes or strings (added as text).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  node.append(...children);
  return node;
}

/** An SVG element, built like `el`: `svg("text", { x: 4, y: 12 }, "label")`. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attrs);
  node.append(...children);
  return node;
}
