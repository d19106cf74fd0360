"""Two runs of one model compared at one node (engine/compare.py): the runs' activations are in memory already, so
the work is one subtraction and its summary, or one signed PNG (app/services/backprop.py's ``signed_png``: grey 0,
128 and 255 stand for −m, 0 and +m), per request."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.errors import ApiError
from app.schemas.compare import ChannelChange, NodeDifference
from app.services.backprop import signed_png, signed_ranges
from app.services.finite import check_finite
from app.services.models import ModelStore
from app.services.runs import Run, RunStore, activation_of
from app.services.tiles import Scale, as_channels, tile_layout
from engine.compare import TOP_K, activation_difference


@dataclass(frozen=True)
class Pair:
    """Run A and run B, of the same model and version."""

    run: Run
    other: Run


def runs_to_compare(run_id: str, other_run_id: str, runs: RunStore, models: ModelStore) -> Pair:
    """Both runs (404 for an unknown one), or a 422 when they are of different models or model versions."""
    run = runs.get(run_id, models)
    other = runs.get(other_run_id, models)
    how = (f"run the other picture through '{run.model_id}' with POST /api/models/{run.model_id}/activations and "
           "compare with the run id it answers")
    if other.model_id != run.model_id:
        raise ApiError(422, f"run '{run_id}' is of model '{run.model_id}' but run '{other_run_id}' is of model "
                            f"'{other.model_id}': the two runs must be of the same model to compare; {how}")
    if other.version != run.version:
        raise ApiError(422, f"runs '{run_id}' and '{other_run_id}' are of two versions of model '{run.model_id}' "
                            f"(its weights changed between them): the two runs must be of the same model; {how}")
    return Pair(run, other)


def difference_of(pair: Pair, node_id: str) -> np.ndarray:
    """``a − b`` at ``node_id``, batch axis included (float32); 404 for a node the model does not have, 422 when
    the difference is not finite."""
    a = activation_of(pair.run, node_id)
    b = activation_of(pair.other, node_id)
    difference = np.subtract(a, b, dtype=np.float32)
    check_finite(pair.run.model_id, difference, f"in the difference of the two runs at node '{node_id}'")
    return difference


def difference_png(pair: Pair, node_id: str, scale: Scale) -> tuple[bytes, str]:
    """The tiled greyscale PNG of ``a − b`` with each tile's (or the layer's) symmetric range, and its layout as
    JSON for the X-Tile-Layout header (without ranges, as for a node's PNG)."""
    png, layout = signed_png(difference_of(pair, node_id)[0], scale, pair.run.time_axes.get(node_id))
    return png, layout.model_dump_json(exclude={"ranges"})


def node_difference(pair: Pair, node_id: str, op: str, scale: Scale, top_k: int = TOP_K) -> NodeDifference:
    """The node's difference and its summary, per tile: the activations are taken as the PNG's tiles
    (``tiles.as_channels``: (C, H, W) as it is, a vector (F,) one tile), so a channel here is a tile there."""
    run, other = pair.run, pair.other
    time_axis = run.time_axes.get(node_id)
    a = np.asarray(activation_of(run, node_id)[0], dtype=np.float32)
    b = np.asarray(activation_of(other, node_id)[0], dtype=np.float32)
    found = activation_difference(as_channels(a, time_axis), as_channels(b, time_axis), top_k)  # (tiles, H, W)
    where = f"in the difference of the two runs at node '{node_id}'"
    check_finite(run.model_id, found.difference, where)
    m = signed_ranges(found.difference, scale)
    base = f"/api/runs/{run.run_id}/compare/{other.run_id}/nodes/{node_id}"
    return NodeDifference(
        id=node_id, op=op, shape=list(a.shape), model_id=run.model_id, run_id=run.run_id, other_run_id=other.run_id,
        max_abs=found.max_abs, mean_abs=found.mean_abs, norm_a=found.norm_a, norm_b=found.norm_b,
        norm_difference=found.norm_difference, cosine_similarity=found.cosine_similarity,
        relative_change=found.relative_change, channel_mean_abs=found.channel_mean_abs.tolist(),
        channel_max_abs=found.channel_max_abs.tolist(),
        top_channels=[ChannelChange(channel=c.channel, mean_abs=c.mean_abs, max_abs=c.max_abs,
                                    largest_at=list(c.largest_at)) for c in found.top_channels],
        png_url=f"{base}.png" + ("?scale=layer" if scale == "layer" else ""), npy_url=f"{base}.npy",
        run_png_url=f"/api/runs/{run.run_id}/nodes/{node_id}.png",
        other_png_url=f"/api/runs/{other.run_id}/nodes/{node_id}.png",
        layout=tile_layout(a.shape, np.stack([-m, m], axis=1).tolist(), scale, time_axis), time_axis=time_axis)

