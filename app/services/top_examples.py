"""Top examples of a digit model's channels: computed once per model (its weights' version) over the 10,000 shipped
digits as an analysis job (``app.services.analysis_jobs``), then read from the job's files for every node and channel.

The job (kind ``top-examples``) runs ``engine.learned.top_examples.top_examples`` with k = 16 over every node that
has channels and stores three arrays, one row per channel of every node, the nodes one after the other (the
result's ``nodes`` gives each node's first row, ``offset``, and its number of channels):

- ``indices.npy``: ``(R, 16)`` int32, the digits' indices, best first;
- ``values.npy``: ``(R, 16)`` float32, the channel's maximum over its positions in that digit;
- ``positions.npy``: ``(R, 16, 2)`` int32, the [row, column] of that maximum (-1 for a node without positions).

A request for fewer examples takes the first k. The boxes come from ``engine.learned.top_examples.example_box``
(the receptive-field module's answer) when the answer is built. The pictures are served by ``digit_png``: a shipped
digit, whole, cropped or with a box drawn, upscaled by whole pixels (nearest).

Errors (``UnusableRequestError``, 422): a model that does not take the shipped digits, a node without channels, a
channel or box out of range. An unknown node is ``UnknownNodeError`` (404, listing the nodes).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.schemas.channels import ChannelExamples, ChannelTopExamples, LayerTopExamples, TopExample
from app.services.analysis_jobs import AnalysisJobs, AnalysisTask, JobContext
from app.services.errors import UnusableRequestError
from app.services.models import ModelStore, StoredModel
from engine.datasets import mnist
from engine.graph import Graph, Node
from engine.learned.top_examples import MAX_K, ExampleBox, channel_nodes, example_box, top_examples
from engine.receptive_field import WHOLE, NodeRF, receptive_fields
from engine.time_steps import time_axes

KIND = "top-examples"
#: what decides the result besides the model: bump ``format`` when the stored arrays change meaning
TASK_KEY = {"dataset": "mnist-10k", "k": MAX_K, "score": "max over positions", "format": 1}
DATASET = "the 10,000 shipped MNIST digits (8,000 training, 2,000 test)"
SCORE = "the channel's largest value over its positions in the digit (at the first position reaching it)"
DIGIT_SIZE = 28
DEFAULT_SCALE = 4
MAX_SCALE = 16
BOX_COLOUR = (255, 140, 0)  # orange: visible on the white-on-black digits


class NotDigitModelError(UnusableRequestError):
    """A model that does not take the shipped digits as images (1, 28, 28), normalised as they are."""

    def __init__(self, model: StoredModel) -> None:
        shape = list(model.graph.input_shape)
        if sequence_model(model):
            why = ("it reads the digit row by row as a sequence (a recurrent network): its units are not channels "
                   "over image positions")
        elif tuple(shape) != (1, DIGIT_SIZE, DIGIT_SIZE):
            why = f"it takes inputs of shape {shape}"
        else:
            pre = model.bundle.preprocessing
            why = (f"it normalises its input differently (mean {list(pre.mean)}, std {list(pre.std)}"
                   f"{', inverted' if pre.invert else ''})")
        super().__init__(f"top examples are computed over the shipped MNIST digits, images of shape [1, 28, 28] "
                         f"normalised with mean {mnist.MEAN} and std {mnist.STD}, for convolutional networks; model "
                         f"'{model.id}' is not one: {why}. Use digits_classic, digits_resnet or a convolutional "
                         "network trained on digits in the training lab")


class NoChannelsError(UnusableRequestError):
    """A node that only rearranges an earlier layer's values (flatten, reshape)."""

    def __init__(self, node_id: str, nodes: list[str]) -> None:
        super().__init__(f"node '{node_id}' has no channels of its own (it rearranges an earlier layer's values); "
                         f"nodes with channels: {', '.join(nodes)}")


class ChannelRangeError(UnusableRequestError):
    """A channel past the node's last one."""

    def __init__(self, node_id: str, channel: int, channels: int) -> None:
        super().__init__(f"node '{node_id}' has {channels} channels: channel must be 0 to {channels - 1}, "
                         f"got {channel}")


class DigitRequestError(UnusableRequestError):
    """A digit picture that cannot be drawn as asked (index or box out of range)."""


def sequence_model(model: StoredModel) -> bool:
    """Whether the model reads its input as a sequence (a recurrent network reading the digit's rows)."""
    return bool(time_axes(model.graph))


def takes_shipped_digits(model: StoredModel) -> bool:
    """Whether the model reads the shipped digits as images, as they are: input (1, 28, 28), their mean and std, and
    no sequence (time) axis."""
    pre = model.bundle.preprocessing
    return (tuple(model.graph.input_shape) == (1, DIGIT_SIZE, DIGIT_SIZE) and not sequence_model(model)
            and np.allclose(pre.mean, (mnist.MEAN,)) and np.allclose(pre.std, (mnist.STD,)) and not pre.invert)


def check_digit_model(model: StoredModel) -> None:
    if not takes_shipped_digits(model):
        raise NotDigitModelError(model)


def channel_node(model: StoredModel, node_id: str) -> Node:
    """The node, if it has channels (``UnknownNodeError`` for an unknown one, ``NoChannelsError`` otherwise)."""
    node = model.graph.node(node_id)
    nodes = channel_nodes(model.graph)
    if node.id not in nodes:
        raise NoChannelsError(node.id, nodes)
    return node


def model_layers(model: StoredModel) -> list[dict[str, Any]]:
    """The model's nodes with channels, as ``ChannelLayer`` fields."""
    graph = model.graph
    return [{"node": n, "op": graph.node(n).op.op, "output_shape": list(graph.node(n).output_shape),
             "channels": graph.node(n).output_shape[0]} for n in channel_nodes(graph)]


def digit_models(store: ModelStore, include: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The models ``include`` lets through that take the shipped digits, with their layers, as ``TopExamplesModel``
    fields."""
    return [{"id": m.id, "name": m.bundle.name, "layers": model_layers(m)}
            for m in store.available(include) if takes_shipped_digits(m)]


# --- the job -----------------------------------------------------------------------------------------------------

def compute(graph: Graph, params: dict[str, np.ndarray], ctx: JobContext) -> dict[str, Any]:
    """The top 16 examples of every channel of every node with channels, over the 10,000 shipped digits."""
    started = time.perf_counter()
    x, _ = mnist.load_mnist("all")
    found = top_examples(graph, params, x, k=MAX_K, progress=ctx.progress)
    rows = sum(f.channels for f in found.values())
    indices = np.full((rows, MAX_K), -1, np.int32)
    values = np.full((rows, MAX_K), np.nan, np.float32)
    positions = np.full((rows, MAX_K, 2), -1, np.int32)
    nodes = []
    offset = 0
    for node_id, f in found.items():
        kept = f.indices.shape[1]
        indices[offset:offset + f.channels, :kept] = f.indices
        values[offset:offset + f.channels, :kept] = f.values
        positions[offset:offset + f.channels, :kept, :f.positions.shape[2]] = f.positions
        nodes.append({"node": node_id, "offset": offset, "channels": f.channels})
        offset += f.channels
    files = {name: ctx.write_npy(f"{name}.npy", array)
             for name, array in (("indices", indices), ("values", values), ("positions", positions))}
    return {"kind": KIND, "dataset": DATASET, "images": int(x.shape[0]), "k": MAX_K, "nodes": nodes, "files": files,
            "seconds": round(time.perf_counter() - started, 2)}


def task_for(model: StoredModel) -> AnalysisTask:
    graph, params = model.graph, model.bundle.params
    return AnalysisTask(kind=KIND, model_id=model.id, version=model.version, key=TASK_KEY,
                        run=lambda ctx: compute(graph, params, ctx))


@dataclass(frozen=True)
class StoredTopExamples:
    """A finished job's arrays: per node its rows ``(offset, channels)``."""

    job_id: str
    rows: dict[str, tuple[int, int]]
    indices: np.ndarray
    values: np.ndarray
    positions: np.ndarray


def _load(jobs: AnalysisJobs, task: AnalysisTask) -> StoredTopExamples | None:
    result = jobs.cached_result(task)
    if result is None:
        return None
    try:
        arrays = {name: np.load(jobs.file(task.id, f"{name}.npy"), allow_pickle=False)
                  for name in ("indices", "values", "positions")}
    except Exception:  # removed by a clean-up between the two reads: compute it again
        return None
    return StoredTopExamples(task.id, {n["node"]: (n["offset"], n["channels"]) for n in result["nodes"]}, **arrays)


def find_or_start(model: StoredModel, jobs: AnalysisJobs, background: Callable[[], AbstractContextManager[None]],
                  owner: str | None) -> tuple[StoredTopExamples | None, dict[str, Any] | None]:
    """The model's top examples when computed (``(stored, None)``), else the job computing them (``(None, status)``;
    started now if nobody had asked)."""
    check_digit_model(model)
    task = task_for(model)
    stored = _load(jobs, task)
    if stored is not None:
        return stored, None
    status = jobs.submit(task, background, owner=owner)
    if status["status"] == "done":
        stored = _load(jobs, task)
        if stored is not None:
            return stored, None
    return None, status


# --- the answers -------------------------------------------------------------------------------------------------

def _box_text(box: ExampleBox) -> str:
    return ",".join(map(str, (*box.clipped_start, *box.clipped_end)))


def _examples(stored: StoredTopExamples, rf: NodeRF, row: int, channel: int, k: int) -> list[TopExample]:
    _, labels = mnist.load_raw()
    examples = []
    for rank in range(k):
        index = int(stored.indices[row, rank])
        if index < 0:
            break
        spatial = len(rf.output_shape) - 1
        position = [int(p) for p in stored.positions[row, rank, :spatial]]
        box = example_box(rf, channel, position)
        text = _box_text(box)
        examples.append(TopExample(
            rank=rank + 1, index=index, split="train" if index < mnist.TRAIN_SIZE else "test",
            label=int(labels[index]), value=float(stored.values[row, rank]), position=position,
            box={"start": list(box.start), "end": list(box.end), "clipped_start": list(box.clipped_start),
                 "clipped_end": list(box.clipped_end), "clipped": box.clipped, "whole": box.whole},
            crop_url=f"/api/digits/{index}.png?crop={text}&scale={DEFAULT_SCALE}",
            digit_url=f"/api/digits/{index}.png?box={text}&scale={DEFAULT_SCALE}"))
    return examples


def _tied(stored: StoredTopExamples, row: int, k: int) -> bool:
    """Whether the first ``k`` examples of a row (two or more) all have the same value."""
    values = stored.values[row, :k]
    return bool(values.size > 1 and (values == values[0]).all())


def _base(model: StoredModel, stored: StoredTopExamples, node: Node, k: int) -> tuple[dict[str, Any], NodeRF]:
    rf = receptive_fields(model.graph, strict=False)[node.id]
    note = ""
    if rf.status == WHOLE:
        note = f"every unit of '{node.id}' sees the whole digit ({rf.reason}): the crop is the whole image"
    elif rf.status != "local":
        note = f"'{node.id}' has no receptive field ({rf.reason}): the whole image is shown"
    base = {"model_id": model.id, "node": node.id, "output_shape": list(node.output_shape), "k": k,
            "dataset": DATASET, "score": SCORE, "receptive_field": rf.to_dict(), "note": note,
            "job_id": stored.job_id}
    return base, rf


def _rows(stored: StoredTopExamples, node: Node) -> tuple[int, int]:
    if node.id not in stored.rows:  # cannot happen for a node with channels of the same model version
        raise UnusableRequestError(f"node '{node.id}' is missing from the stored top examples: ask again later")
    return stored.rows[node.id]


def channel_answer(model: StoredModel, stored: StoredTopExamples, node: Node, channel: int,
                   k: int) -> ChannelTopExamples:
    """The top ``k`` examples of one channel."""
    offset, channels = _rows(stored, node)
    if not 0 <= channel < channels:
        raise ChannelRangeError(node.id, channel, channels)
    base, rf = _base(model, stored, node, k)
    return ChannelTopExamples(**base, channel=channel, examples=_examples(stored, rf, offset + channel, channel, k),
                              tied=_tied(stored, offset + channel, k))


def layer_answer(model: StoredModel, stored: StoredTopExamples, node: Node, k: int) -> LayerTopExamples:
    """The top ``k`` examples of every channel of a node."""
    offset, channels = _rows(stored, node)
    base, rf = _base(model, stored, node, k)
    return LayerTopExamples(**base, channels=[
        ChannelExamples(channel=c, examples=_examples(stored, rf, offset + c, c, k), tied=_tied(stored, offset + c, k))
        for c in range(channels)])


def check_channel(node: Node, channel: int) -> None:
    """422 before any job starts for a channel the node does not have."""
    channels = node.output_shape[0]
    if not 0 <= channel < channels:
        raise ChannelRangeError(node.id, channel, channels)


# --- pictures ----------------------------------------------------------------------------------------------------

def parse_box(text: str, name: str) -> tuple[int, int, int, int]:
    """``"r0,c0,r1,c1"`` (inclusive, inside the 28 × 28 digit, r0 ≤ r1, c0 ≤ c1) as four ints."""
    try:
        box = tuple(int(p) for p in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise DigitRequestError(f"{name} must be four integers row0,col0,row1,col1 (inclusive), such as "
                                f"{name}=0,5,4,9; got '{text[:40]}'")
    r0, c0, r1, c1 = box
    if not (0 <= r0 <= r1 < DIGIT_SIZE and 0 <= c0 <= c1 < DIGIT_SIZE):
        raise DigitRequestError(f"{name} {list(box)} is not a box inside the 28 × 28 digit: rows and columns run from "
                                "0 to 27, with row0 ≤ row1 and col0 ≤ col1")
    return r0, c0, r1, c1


def digit_png(index: int, crop: str | None = None, box: str | None = None, scale: int = DEFAULT_SCALE) -> bytes:
    """Shipped digit ``index`` as a PNG, white on black as stored, upscaled ``scale`` times (nearest): the part inside
    ``crop``, or the whole digit with ``box`` outlined in orange (in colour then)."""
    images, _ = mnist.load_raw()
    if not 0 <= index < images.shape[0]:
        raise DigitRequestError(f"digit {index} does not exist: the shipped digits are 0 to {images.shape[0] - 1}")
    if crop is not None and box is not None:
        raise DigitRequestError("ask for crop= or box=, not both")
    pixels = np.asarray(images[index])
    if crop is not None:
        r0, c0, r1, c1 = parse_box(crop, "crop")
        pixels = pixels[r0:r1 + 1, c0:c1 + 1]
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    if box is not None:
        r0, c0, r1, c1 = parse_box(box, "box")
        rgb = np.repeat(pixels[:, :, None], 3, axis=2)
        width = max(1, scale // 3)
        top, left, bottom, right = r0 * scale, c0 * scale, (r1 + 1) * scale, (c1 + 1) * scale
        rgb[top:top + width, left:right] = BOX_COLOUR
        rgb[bottom - width:bottom, left:right] = BOX_COLOUR
        rgb[top:bottom, left:left + width] = BOX_COLOUR
        rgb[top:bottom, right - width:right] = BOX_COLOUR
        pixels = rgb
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()
