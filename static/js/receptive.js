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
