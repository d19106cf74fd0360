"""What the browser decodes from a node's PNG is, pixel for pixel, what the Pillow encoder it replaced made:
for stored and deflated PNGs, feature maps and vectors, so the explorer shows exactly what it showed before."""

from __future__ import annotations

import base64
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app.test_tiles_png import pillow_render_tiles

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"
# stored (dense) and deflated (mostly zero) maps, the picture, 1 x 1 maps and the class scores
NODES = ["input", "stem.conv", "stem.relu6", "block5.depthwise.relu6", "block12.expand.relu6", "pool", "classifier"]

# the page's own loader (featuremaps.js): fetch, createImageBitmap, canvas -> ImageData, as the explorer does
READ_GREY = """async ([runId, nodes]) => {
  const { loadTiles } = await import('/static/js/featuremaps.js');
  const result = {};
  for (const node of nodes) {
    const { grey } = await loadTiles(`/api/runs/${runId}/nodes/${node}.png?scale=channel`, {});
    const d = grey.data;
    const levels = new Uint8Array(d.length / 4);
    let grey_and_opaque = true;
    for (let i = 0, j = 0; i < d.length; i += 4, j += 1) {
      levels[j] = d[i];
      if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2] || d[i + 3] !== 255) grey_and_opaque = false;
    }
    let text = "";  // base64: a few MB of levels cross to Python as one string, not as a JSON array of numbers
    for (let i = 0; i < levels.length; i += 32768) text += String.fromCharCode(...levels.subarray(i, i + 32768));
    result[node] = { width: grey.width, height: grey.height, levels: btoa(text), grey_and_opaque };
  }
  return result;
}"""


def fetch(url: str, data: bytes | None = None, content_type: str | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type} if content_type else {})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def test_the_page_decodes_the_grey_levels_pillow_encoded(page, server):
    answer = json.loads(fetch(f"{server}/api/models/efficientnet_lite0/activations",
                              (SAMPLES / "coffee.jpg").read_bytes(), "image/jpeg"))
    run_id = answer["run_id"]
    page.goto("/upload")  # a page of the app that computes nothing: its origin, its Content-Security-Policy
    decoded = page.evaluate(READ_GREY, [run_id, NODES])
    for node in NODES:
        activation = np.load(io.BytesIO(fetch(f"{server}/api/runs/{run_id}/nodes/{node}.npy")))
        png, layout = pillow_render_tiles(activation[0])
        expected = np.asarray(Image.open(io.BytesIO(png)))
        got = decoded[node]
        assert (got["height"], got["width"]) == expected.shape == (layout.height, layout.width), node
        assert got["grey_and_opaque"], node
        levels = np.frombuffer(base64.b64decode(got["levels"]), dtype=np.uint8)
        np.testing.assert_array_equal(levels.reshape(expected.shape), expected, err_msg=f"node {node}")
    page.console.check()
