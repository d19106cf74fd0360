"""What the browser decodes from a node's PNG is, pixel for pixel, what the Pillow encoder it replaced made:
for stored and deflated PNGs, feature maps and vectors, so the explorer shows exactly what it showed before."""

from __future__ import annotations

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
    const levels = [];
    let grey_and_opaque = true;
    for (let i = 0; i < grey.data.length; i += 4) {
      const [r, g, b, a] = grey.data.subarray(i, i + 4);
      levels.push(r);
      if (r !== g || g !== b || a !== 255) grey_and_opaque = false;
    }
    result[node] = { width: grey.width, height: grey.height, levels, grey_and_opaque };
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
    page.goto("/")  # any page of the app: its origin, its Content-Security-Policy
    decoded = page.evaluate(READ_GREY, [run_id, NODES])
    for node in NODES:
        activation = np.load(io.BytesIO(fetch(f"{server}/api/runs/{run_id}/nodes/{node}.npy")))
        png, layout = pillow_render_tiles(activation[0])
        expected = np.asarray(Image.open(io.BytesIO(png)))
        got = decoded[node]
        assert (got["height"], got["width"]) == expected.shape == (layout.height, layout.width), node
        assert got["grey_and_opaque"], node
        np.testing.assert_array_equal(np.array(got["levels"], dtype=np.uint8).reshape(expected.shape), expected,
                                      err_msg=f"node {node}")
    page.console.check()
