// Receptive-field helpers shared by the explorer's detail view and the receptive-fields page. The API gives,
// per node and spatial axis, r (size), S (effective stride) and P (effective padding) (Araujo et al., 2019).

/** The input-space box of unit `index` along one axis: unit i starts at i·S − P and spans r positions. */
export function unitSpan(axis, index) {
  const start = index * axis.stride - axis.padding;
  return [start, start + axis.size - 1];
}

/** r, S, P for every spatial axis of an architecture node; the input itself is r = 1, S = 1, P = 0. */
export function fieldOf(archById, nodeId, axes = 2) {
  if (nodeId === "input") {
    return { status: "local", axes: Array.from({ length: axes }, () => ({ size: 1, stride: 1, padding: 0 })) };
  }
  return archById.get(nodeId)?.receptive_field ?? { status: "undefined", reason: "not in the architecture" };
}

/** "5" when both axes agree, "5×7" when they do not. */
export function perAxis(field, key) {
  const values = field.axes.map((a) => a[key]);
  return values.every((v) => v === values[0]) ? String(values[0]) : values.join("×");
}

/**
 * For a node whose units a global gate also scales (squeeze-and-excitation: one value per channel, computed from the
 * whole input), the badge text, else "". Its outline stays the main path's field; the API's `modulated_at` names
 * the merges where gates joined, the latest last.
 */
export function gateNote(field, archById) {
  const joins = field?.global_modulation ? field.modulated_at ?? [] : [];
  if (!joins.length) return "";
  const last = joins[joins.length - 1];
  const more = joins.length > 1 ? `, and ${joins.length - 1} earlier` : "";
  return archById?.get(last)?.op === "add"
    ? `also shifted by a global value (joined at ${last}${more})`
    : `also scaled by a global gate (squeeze-excite at ${last}${more})`;
}

/** The longer explanation of `gateNote`, for a tooltip or a paragraph. */
export const GATE_EXPLANATION = "A global gate is one number per channel, computed from the whole input and the " +
  "same at every position (squeeze-and-excitation). The outline is where the rest of this neuron looks, with the " +
  "gate held fixed; through the gate, every input pixel can change it a little.";
