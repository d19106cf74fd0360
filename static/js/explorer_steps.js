// The explorer's steps, worked out from its state and data (no DOM): the strip's columns for the run and the "Layers
// shown" mode, which column the state's layer is, the state made consistent with the columns, and each step's lesson.
import { columnTitles, lesson, opTitle } from "./lessons.js";
import { mainLayers } from "./overview.js";

export const PROBABILITIES = "(probabilities)"; // the id of the last step, after the output node: its softmax
const BIG = 40; // a network of more nodes shows its main layers ("automatic"), and is lectured one block per step

/** The columns' mode: the state's filter, or for "automatic" every node of a small network, else its main layers. */
export function filterMode(state, run) {
  if (state.values.filter !== "auto") return state.values.filter;
  const many = (run?.nodes.length ?? 0) > BIG;
  // a lecture through a big network (EfficientNet: 61 main steps) shows one step per named block (15 + the rest)
  if (many && state.values.lecture) return "blocks";
  return many ? "main" : "all";
}

/** A node's block: the part of its id before the first dot ("block3.expand.conv" → "block3"), or null. */
function blockOf(id) {
  const dot = id.indexOf(".");
  return dot > 0 ? id.slice(0, dot) : null;
}

/** One column per named block: its last node stands for the block, the others are listed in its lesson. */
function foldBlocks(run, visible) {
  const last = run.nodes[run.nodes.length - 1]?.id;
  const members = new Map();
  for (const node of run.nodes) {
    const block = blockOf(node.id);
    if (block) members.set(block, [...(members.get(block) ?? []), node.id]);
  }
  return visible.filter((node, i) => {
    const block = blockOf(node.id);
    return !block || node.id === last || blockOf(visible[i + 1]?.id ?? "") !== block;
  }).map((node) => {
    const block = blockOf(node.id);
    const folded = members.get(block) ?? [];
    // a block that is only this column's own convolution → batch norm → activation keeps that column's lesson
    const more = folded.length > (node.chain?.length ?? 0) + 1;
    return block && more && node.id !== last ? { ...node, block: { name: block, members: folded } } : node;
  });
}

function makeColumns(run, archById, mode) {
  // in "main" (and "blocks") mode a convolution, its batch norm and its activation make one column, shown after the
  // last of them (the architecture's main_column says which); its `chain` notes what it stands for
  let visible = mainLayers(run.nodes, archById, mode);
  if (mode === "blocks") visible = foldBlocks(run, visible);
  // the forward pass ends on the answer: the softmax of the last node's scores, the top classes labelled
  const output = run.nodes[run.nodes.length - 1];
  if (run.classes?.length && output && output.op !== "softmax") {
    visible.push({ id: PROBABILITIES, synthetic: "probabilities", op: "softmax", shape: output.shape, classes: run.classes, from: output.id });
  }
  return visible;
}

let made = { run: null, archById: null, mode: null, columns: null };

/**
 * The strip's columns (run nodes, some folded) for the state and data, or null while there is no run. The same
 * array while the run, the architecture and the mode are the same, so a view can tell that nothing changed.
 */
export function columnsFor(state, data) {
  const { run, archById } = data;
  if (!run) return null;
  const mode = filterMode(state, run);
  if (made.run !== run || made.archById !== archById || made.mode !== mode) {
    made = { run, archById, mode, columns: makeColumns(run, archById, mode) };
  }
  return made.columns;
}

/** The column showing `layer` (a layer folded into a block's column is shown by that column), or -1. */
export function stepIndex(columns, layer) {
  if (!layer || !columns) return -1;
  return columns.findIndex((n) => n.id === layer || n.block?.members.includes(layer));
}

/**
 * Make the state agree with the columns (a link, the Back button or another mode may name a layer the strip does
 * not show): the layer becomes its column's id (the first column's when none shows it; lecture mode always has one),
 * and a unit of a node folded away shows every node. Silent: the caller renders.
 */
export function normalise(state, data) {
  const columns = columnsFor(state, data);
  if (!columns?.length) return;
  const { layer, lecture, unit } = state.values;
  const patch = {};
  if (layer || lecture) {
    const id = columns[Math.max(0, stepIndex(columns, layer))].id;
    if (id !== layer) patch.layer = id;
  }
  const [node] = unit;
  const folded = node && !columns.some((c) => c.id === node) && data.run.nodes.some((n) => n.id === node);
  if (folded && filterMode(state, data.run) !== "all") patch.filter = "all";
  if (Object.keys(patch).length) state.set(patch, { silent: true });
}

/** The unit of the state's `unit` ([node, channel, y, x] as text) as numbers ({node, channel, y, x}), or null. */
export function unitOf(values) {
  if (values.length < 2) return null;
  const [node, channel, y, x] = values;
  return { node, channel: Number(channel), y: y === undefined ? null : Number(y), x: x === undefined ? null : Number(x) };
}

/** The last step's lesson, with the API's numbers: the top classes and their probabilities. */
function probabilitiesLesson(node) {
  const pct = (p) => `${(100 * p).toFixed(p >= 0.1 ? 1 : 2)}%`;
  const [best, ...rest] = node.classes;
  const others = rest.map((c) => `${c.label} ${pct(c.probability)}`).join(", ");
  return `Softmax turns the ${node.shape[0]} scores of ${node.from} into probabilities, e^score divided by the sum of ` +
    `all the e^score: positive numbers that add up to 1. The network's answer is the most probable class, ` +
    `${best.label} (${pct(best.probability)})${others ? `; then ${others}` : ""}.`;
}

/** The lesson of step `index` (its column `node`): { title, text }. */
export function stepLesson(node, index, { run, archById }) {
  if (node.synthetic === "probabilities") {
    return { title: `${index + 1}. Softmax · the probabilities`, text: probabilitiesLesson(node) };
  }
  // a collapsed column (convolution → batch norm → activation) is explained by its first node, then the rest
  const head = node.chain ? archById.get(node.chain[0]) : archById.get(node.id);
  const archNode = head ?? { op: node.op, output_shape: node.shape };
  const inputs = (archNode.inputs ?? []).map((id) => run.nodes.find((n) => n.id === id)?.shape);
  const titles = columnTitles(node, archById);
  if (node.block) {
    const kinds = [...new Set(node.block.members.map((id) => opTitle(archById.get(id))))];
    return {
      title: `${index + 1}. Block ${node.block.name} (${node.block.members.length} layers) · ${node.id}`,
      text: `The whole block ${node.block.name} in one step (lecture mode groups a big network's blocks; "Layers shown" ` +
        `lists every layer): ${kinds.join(", ")}. Its output: ${node.shape.join(" × ")}.`,
    };
  }
  let text = lesson({ ...archNode, output_shape: archNode.output_shape ?? node.shape }, node, inputs[0]);
  if (node.chain) {
    const rest = titles.slice(1).join(" and ");
    text += ` Then ${rest}, number by number (shown here: the result after ${titles[titles.length - 1]}).`;
  }
  return { title: `${index + 1}. ${titles.join(" → ")} · ${node.id}`, text };
}
