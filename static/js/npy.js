import { api } from "./api.js";

// Read NumPy's .npy format (version 1-3, little-endian float32/float64/int/uint8, C order), as the API's
// `/api/runs/{run}/nodes/{node}.npy` serves raw activations.

const DTYPES = {
  "<f4": Float32Array, "<f8": Float64Array, "|u1": Uint8Array, "<u1": Uint8Array, "|i1": Int8Array,
  "<i2": Int16Array, "<u2": Uint16Array, "<i4": Int32Array, "<u4": Uint32Array,
};

/** `parseNpy(arrayBuffer)` -> { shape: number[], data: TypedArray, dtype } */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.slice(0, 6));
  if (magic !== "\x93NUMPY") throw new Error("not a .npy file");
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.slice(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? "";
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const Type = DTYPES[descr];
  if (!Type) throw new Error(`unsupported .npy dtype ${descr}`);
  if (fortran) throw new Error(".npy in Fortran order is not supported");
  const offset = headerStart + headerLength;
  const count = shape.reduce((a, b) => a * b, 1);
  const data = new Type(buffer.slice(offset, offset + count * Type.BYTES_PER_ELEMENT));
  return { shape, data, dtype: descr };
}

/** Element of a C-ordered array at `index` (one number per axis). */
export function at(array, index) {
  let flat = 0;
  for (let axis = 0; axis < array.shape.length; axis += 1) flat = flat * array.shape[axis] + index[axis];
  return array.data[flat];
}

/** Write a float32 C-ordered array as .npy bytes (for sending a tensor to the API). */
export function toNpy(data, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + data.length * 4);
  out.set([0x93, ...[..."NUMPY"].map((c) => c.charCodeAt(0)), 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set([...header].map((c) => c.charCodeAt(0)), 10);
  out.set(new Uint8Array(Float32Array.from(data).buffer), 10 + header.length);
  return out;
}

const cache = new Map();

/** A run's node activation (or a model parameter) as a parsed .npy, fetched once per page. */
export function fetchNpy(url, label = "Fetching numbers…") {
  if (!cache.has(url)) {
    const promise = api(url, { as: "arrayBuffer", label }).then(parseNpy).catch((err) => {
      cache.delete(url);
      throw err;
    });
    cache.set(url, promise);
  }
  return cache.get(url);
}
