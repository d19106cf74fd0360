// rnn / lstm / gru: hidden unit j at step t. The step's input x_t and the previous state h_{t−1} go into every gate
// as two weighted sums (the input side and the recurrent side), each gate's activation follows, then the new state:
// c_t = f·c_{t−1} + i·g and h_t = o·tanh(c_t) (LSTM), h_t = (1 − z)·n + z·h_{t−1} (GRU), h_t = the gate (RNN).
// Every number is the API's (the engine's recomputation in float64 beside its own recorded value).
import { checkLine, el, esc, fmt, signed } from "./common.js";

const SHOWN_TERMS = 4; // products per side shown at once; the rest behind "every listed product"
const SUB = { input: "i", recurrent: "h" };

/** Products as a table (the input's value, the weight, their product tinted red + or blue −). */
function termsTable(terms, letter, max) {
  return el("table", { class: "data terms" },
    el("tbody", {}, ...terms.map((t) => {
      const product = el("td", { class: "num", text: fmt(t.product) });
      const strength = Math.min(1, Math.abs(t.product) / max);
      product.style.background = t.product >= 0 ? `rgba(214, 96, 77, ${0.5 * strength})` : `rgba(67, 147, 195, ${0.5 * strength})`;
      return el("tr", {}, el("td", { class: "mono", text: `${letter}[${t.index}]` }), el("td", { class: "num", text: fmt(t.input) }),
        el("td", { class: "num muted", text: `× ${fmt(t.weight)}` }), product);
    })));
}

/** The weighted sum of one side of a gate, as one line, then its largest products. */
function sideBlock(side, name, gate, unit, intro) {
  const letter = name === "input" ? "x" : "h";
  const line = el("p", {
    class: "step-text",
    html: `${intro}: W<sub>${SUB[name]}${gate.gate}</sub>[${unit}] · ${name === "input" ? "x<sub>t</sub>" : "h<sub>t−1</sub>"} ` +
      `+ b = Σ ${side.terms.length + side.omitted.count} products ${fmt(side.total)} + bias ${signed(side.bias)} = <strong>${fmt(side.sum)}</strong>`,
  });
  const max = Math.max(1e-9, ...side.terms.map((t) => Math.abs(t.product)));
  const rest = side.terms.slice(SHOWN_TERMS);
  const more = rest.length
    ? [el("details", {}, el("summary", { text: `${rest.length} more listed products` }), termsTable(rest, letter, max))]
    : [];
  const omitted = side.omitted.count
    ? [el("p", { class: "small muted", text: `the other ${side.omitted.count} products add up to ${fmt(side.omitted.sum)}` })]
    : [];
  return [line, termsTable(side.terms.slice(0, SHOWN_TERMS), letter, max), ...more, ...omitted];
}

function gateCard(gate, e) {
  const act = gate.activation === "sigmoid" ? "σ" : gate.activation;
  const pre = gate.reset === null || gate.reset === undefined
    ? `${fmt(gate.input_side.sum)} + ${signed(gate.recurrent_side.sum)}`
    : `${fmt(gate.input_side.sum)} + r·${signed(gate.recurrent_side.sum)} = ${fmt(gate.input_side.sum)} + ${fmt(gate.reset)}·${signed(gate.recurrent_side.sum)}`;
  return el("div", { class: "gate-card", "data-gate": gate.gate },
    el("h4", { html: `${esc(gate.title)} <span class="mono">${gate.gate}</span> = ${act}(…) = <span class="result">${fmt(gate.result)}</span>` }),
    el("p", { class: "side-title", html: `what the row says (x<sub>t</sub>, ${e.x.length} numbers)` }),
    ...sideBlock(gate.input_side, "input", gate, e.unit, "input side"),
    el("p", { class: "side-title", html: `what the memory says (h<sub>t−1</sub>, ${e.h_prev.length} numbers)` }),
    ...sideBlock(gate.recurrent_side, "recurrent", gate, e.unit, "recurrent side"),
    el("p", { class: "step-text", html: `${act}(${pre}) = ${act}(${fmt(gate.pre_activation)}) = <span class="result">${fmt(gate.result)}</span>` }),
    checkLine(gate.result, gate.engine_value));
}

/** The new state: the LSTM's cell and hidden state, the GRU's mix, or the RNN's one activation. */
function updateBlock(e) {
  const g = Object.fromEntries(e.gates.map((gate) => [gate.gate, gate]));
  if (e.cell === "lstm") {
    const c = e.cell_state;
    return [
      el("p", { class: "step-text", html: `memory (cell state): c<sub>t</sub> = f·c<sub>t−1</sub> + i·g = ${fmt(g.f.result)}·${signed(c.previous)} + ` +
        `${fmt(g.i.result)}·${signed(g.g.result)} = ${fmt(c.forget_term)} + ${signed(c.input_term)} = <span class="result">${fmt(c.result)}</span> ` +
        `<span class="muted">(c<sub>t−1</sub>: ${esc(c.previous_from)}; the forget gate keeps ${fmt(g.f.result)} of it, the input gate writes ${fmt(g.i.result)} of the candidate)</span>` }),
      checkLine(c.result, c.engine_value),
      el("p", { class: "step-text", html: `hidden state: h<sub>t</sub> = o·tanh(c<sub>t</sub>) = ${fmt(g.o.result)}·tanh(${signed(c.result)}) = ` +
        `${fmt(g.o.result)}·${signed(c.tanh)} = <span class="result">${fmt(e.result)}</span>` }),
    ];
  }
  if (e.cell === "gru") {
    const u = e.update;
    return [el("p", { class: "step-text", html: `hidden state: h<sub>t</sub> = (1 − z)·n + z·h<sub>t−1</sub> = (1 − ${fmt(u.z)})·${signed(u.n)} + ` +
      `${fmt(u.z)}·${signed(u.h_prev)} = ${fmt(u.new_term)} + ${signed(u.kept_term)} = <span class="result">${fmt(e.result)}</span> ` +
      `<span class="muted">(the update gate keeps ${fmt(u.z)} of the previous state and takes the rest from the candidate)</span>` })];
  }
  return [el("p", { class: "step-text", html: `hidden state: h<sub>t</sub> = ${fmt(e.gates[0].result)} = <span class="result">${fmt(e.result)}</span>` })];
}

export function recurrentView(e) {
  const cellName = { lstm: "LSTM", gru: "GRU", rnn: "RNN" }[e.cell] ?? e.cell;
  const where = e.layer > 0 || e.direction === "reverse" ? ` of layer ${e.layer}${e.direction === "reverse" ? " (reverse direction)" : ""}` : "";
  const previous = e.previous_step === null || e.previous_step === undefined
    ? "no step before it: the memory starts from " + esc(e.h_prev_from)
    : `the memory h<sub>t−1</sub> it wrote after step ${e.previous_step}`;
  const intro = `${cellName} unit ${e.unit}${where} at step ${e.step} of ${e.steps}: it reads x<sub>t</sub> (${esc(e.x_from)}, ` +
    `${e.x.length} numbers) and ${previous} (${e.h_prev.length} numbers). Each gate is a weighted sum of both plus biases, ` +
    "then a squashing function; the gates decide what the memory keeps, writes and shows.";
  return el("div", { class: "recurrent-explanation" },
    el("p", { class: "small", html: intro }),
    el("div", { class: "gates" }, ...e.gates.map((gate) => gateCard(gate, e))),
    ...updateBlock(e),
    checkLine(e.result, e.engine_value));
}
