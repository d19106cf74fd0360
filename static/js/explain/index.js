// The operation detail's views, one per family of explanations (the API's `family`: see docs/api.md). Which nodes
// can be explained is the API's to say (`explainable` on each architecture node), not a list kept here.
import { attentionPoolView } from "./attention_pool.js";
import { convView } from "./conv.js";
import { elementwiseView } from "./elementwise.js";
import { globalAvgPoolView } from "./global_avg_pool.js";
import { linearView } from "./linear.js";
import { mergeView } from "./merge.js";
import { padView } from "./pad.js";
import { poolView } from "./pool.js";
import { recurrentView } from "./recurrent.js";
import { softmaxView } from "./softmax.js";
import { transposedConvView } from "./transposed_conv.js";
import { upsampleView } from "./upsample.js";

export const VIEWS = {
  conv: convView,
  transposed_conv: transposedConvView,
  pool: poolView,
  linear: linearView,
  softmax: softmaxView,
  global_avg_pool: globalAvgPoolView,
  attention_pool: attentionPoolView,
  merge: mergeView,
  elementwise: elementwiseView,
  pad: padView,
  upsample: upsampleView,
  recurrent: recurrentView,
};
