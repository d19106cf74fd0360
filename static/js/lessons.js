// What each kind of layer does, in the lecture's words. Numbers in the sentences come from the API's
// architecture (attributes, shapes) and run statistics; nothing here computes a shape.
import { nodeAttributes } from "./models.js";

const dims = (shape) => (shape && shape.length ? shape.join(" × ") : "");
const pct = (x) => `${Math.round(100 * x)}%`;

function attr(node, name) {
  const a = nodeAttributes(node)[name];
  if (Array.isArray(a)) {
    const flat = a.flat(Infinity);
    return flat.every((v) => v === flat[0]) ? flat[0] : a.map((v) => (Array.isArray(v) ? `[${v.join(", ")}]` : v)).join("×");
  }
  return a;
}

// What the columns that are no architecture node are called: the input, and the probabilities after the output
const OWN_TITLES = { input: "Input", softmax: "Softmax" };

/** What a node's op is called ("Convolution"): the architecture's `title` (the engine's op names it). */
export function opTitle(node) {
  return node?.title ?? OWN_TITLES[node?.op] ?? node?.op;
}

/** The titles of what a strip column shows: its folded chain's nodes, then its own (`byId`: architecture nodes). */
export function columnTitles(node, byId) {
  return [...(node.chain ?? []).map((id) => opTitle(byId?.get(id) ?? { op: id })), opTitle(byId?.get(node.id) ?? node)];
}

/** One or two sentences about a node for lecture mode. `node`: architecture entry; `stats`: run statistics. */
export function lesson(node, stats, inputShape) {
  const op = node.op;
  const out = dims(node.output_shape ?? stats?.shape);
  const inp = dims(inputShape);
  const zeros = stats ? ` ${pct(stats.zero_fraction)} of its ${out} numbers are exactly zero.` : "";
  if (op === "input") {
    return `The image as the network sees it: a volume of numbers, ${out} (channels × height × width). ` +
      "A CNN's neurons are arranged the same way, in 2D maps stacked into 3D volumes.";
  }
  if (op.startsWith("conv_transpose")) {
    return `A transposed convolution spreads each input number over a window, growing ${inp} into ${out}.`;
  }
  if (op.startsWith("conv")) {
    const k = attr(node, "kernel_size");
    const s = attr(node, "stride") ?? 1;
    const groups = attr(node, "groups") ?? 1;
    const channels = node.output_shape?.[0];
    const depthwise = groups > 1 && inputShape && groups === inputShape[0];
    return `Convolutional layer: each neuron sees only a ${k}×${k} window of the previous layer (local connectivity: ` +
      `its receptive field)${depthwise ? ", of one channel only (depthwise)" : ", across all its channels"}. ` +
      `All neurons of one map share one filter (weight sharing), sliding with stride ${s}; ` +
      `${channels} filters give ${channels} maps: ${inp} → ${out}. Click a neuron to see its sum.`;
  }
  if (op.startsWith("max_pool") || op.startsWith("avg_pool")) {
    const k = attr(node, "kernel_size");
    const kind = op.startsWith("max") ? "the largest" : "the average";
    return `Pooling layer: down-sampling. A ${k}×${k} window slides over each map separately and keeps ${kind} ` +
      `number: ${inp} → ${out}. The depth stays; there are no weights to learn.`;
  }
  if (op === "global_avg_pool") return `Global average pooling: each whole map becomes one number, its average: ${inp} → ${out}.`;
  if (op === "linear") {
    return `Fully connected layer: every one of its ${out} neurons is connected to every one of the ${inp} inputs, ` +
      "with its own weight for each: a weighted sum plus a bias.";
  }
  if (op === "flatten" || (op === "reshape" && (node.output_shape ?? []).length === 1)) return `The volume ${inp} is laid out as one long vector of ${out} numbers, ready for a fully connected layer.`;
  if (op === "reshape") return `Reshape: the same numbers regrouped from ${inp} into ${out} (in a channel shuffle, the channels are split into groups).`;
  if (op === "transpose") return `Transpose: the axes swap places, ${inp} → ${out}; after a reshape into groups this shuffles the channels so that the next grouped convolution mixes information from every group.`;
  if (op === "slice") return `Slice: part of the volume is taken, ${inp} → ${out} (ShuffleNet splits its channels in two this way).`;
  if (op === "batch_norm") return "Batch normalisation (a training tip): each channel has its mean removed and is scaled by its standard deviation, then shifted and scaled by two learned numbers.";
  if (op === "layer_norm") {
    const shape = attr(node, "normalized_shape");
    return `Layer normalisation (a training tip, as batch normalisation but per sample): the last axes (${shape}) of each ` +
      "position are centred on their mean and divided by their standard deviation, then scaled and shifted by learned numbers.";
  }
  if (op === "instance_norm") return "Instance normalisation: each map of each image is centred on its own mean and divided by its own standard deviation (style transfer uses it to remove an image's contrast).";
  if (op === "gelu") return `Activation GELU: x times the probability that a standard normal number is below x, a smooth ReLU (transformers and ConvNeXt use it); the shape stays ${out}.`;
  if (["mean", "sum", "max"].includes(op)) return `${opTitle(node)} over axis ${attr(node, "dim")}: ${inp} → ${out}${op === "mean" ? " (over the spatial axes this is global average pooling)" : ""}.`;
  if (op === "matmul") return `Matrix product: ${inp} times a matrix, ${out}. On channels-last maps it is a fully connected layer applied at every position separately (a 1×1 convolution).`;
  if (["sub", "div", "pow", "sqrt"].includes(op)) return `${opTitle(node)}, number by number: ${inp} → ${out}.`;
  if (op === "expand") return `Expand: the same numbers repeated along the axes of size 1, ${inp} → ${out}.`;
  if (["rnn", "lstm", "gru"].includes(op)) {
    return `${opTitle(node)}: a recurrent network reads the sequence one step at a time (here each row of the digit), and each neuron ` +
      "uses its internal memory, the hidden state, to keep information about the previous input: " +
      `${inp} → ${out}. The Recurrent networks page shows it step by step.`;
  }
  if (op === "sequence_attention") return "Attention over time: a score for every step, turned by a softmax into weights that add up to 1; the output is the weighted sum of the steps, which shows which rows drove the decision.";
  if (op === "dropout") return "Dropout (regularisation): in training it drops random neurons; here, at inference, it passes everything through.";
  if (["relu", "relu6", "leaky_relu", "clip"].includes(op)) {
    return `Activation ${opTitle(node)}: negative numbers become ${op === "leaky_relu" ? "small" : "zero"}${op === "relu6" ? ", and numbers above 6 become 6" : ""}. It works on every number separately, so the shape stays ${out}.${zeros}`;
  }
  if (["sigmoid", "tanh", "silu", "hardswish", "hardsigmoid"].includes(op)) return `Activation ${opTitle(node)}, applied to every number separately; the shape stays ${out}.`;
  if (op === "softmax") return "Softmax turns the scores into probabilities: exponentiate each, then divide by their sum, so they are positive and add up to 1.";
  if (op === "add") return "Skip connection (ResNet): the block's input is added to its output, so the block only has to learn a correction, and gradients flow straight back.";
  if (op === "mul") return "Gating: two volumes multiplied number by number.";
  if (op === "concat") return `Concatenation: the inputs' maps are stacked into one volume of ${out}.`;
  if (op === "spatial_softmax") return "Attention: a softmax over positions turns a score map into weights that add up to 1: where the network looks.";
  if (op === "pad") return `Padding: a border is added around every map (${attr(node, "mode")} mode), so ${inp} becomes ${out}. Nothing is learned; it lets the next window reach the edges.`;
  if (op === "upsample") {
    const mode = attr(node, "mode");
    const nearest = mode === "nearest";
    const how = nearest ? "nearest neighbour: every number is repeated to fill a block"
      : `${mode}: every new number is a weighted mean of its nearest input numbers`;
    return `Upsampling (${how}), so the maps grow from ${inp} to ${out}. No new detail appears; the next layers add it.`;
  }
  if (op === "attention_pool") return "Attention pooling: each feature is averaged over positions weighted by the attention map: a weighted sum that shows which parts drove the decision.";
  return `${opTitle(node)}: ${inp} → ${out}.`;
}
