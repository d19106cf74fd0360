"""Representations, from the pixels to the last layer (``engine.learned``: features, projection, probes, neighbours).

- **Projections** (kind ``projection``): the 2,000 held-out shipped digits embedded in 2D at one node, by PCA or
  t-SNE, as an analysis job cached by model version, node and method. A t-SNE job writes the embedding so far every
  50 steps as a preview (``embedding-NNNN.npy``, float32 ``(2000, 2)``), so the page can watch it form.
- **Probes** (kind ``probes``): a linear probe per chosen node (``engine.learned.probes.probe_nodes``), trained on
  the 8,000 training digits' features and scored on the 2,000 held-out ones; one job per model version. Features
  of the 10,000 digits are extracted a few nodes at a time (``PROBE_FEATURE_BYTES`` of float32 at most at once).
- **Neighbours**: an input's nearest shipped sample photos (``static/samples``) at one node, synchronously (a
  forward pass of the photos and the input, in a compute slot).
- **The sprite sheet**: the 2,000 held-out digits in one grey PNG, 50 per row, 28 pixels each.

The digits are fed as the model reads them: pixels in [0, 1] (white digits on black, as stored), then
``(x - mean) / std`` with the model's own preprocessing. A model "takes the digits" when its input is ``[1, 28,
28]`` (CNNs and the recurrent networks that reshape it into rows alike).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.imaging import ImageError, prepare_image
from app.schemas.representations import (
    FeatureInfo,
    KLRecord,
    Neighbour,
    NeighboursResponse,
    PCAProjection,
    ProbeLayer,
    ProbesResponse,
    RepresentationsSupport,
    SpriteInfo,
    TSNEProjection,
)
from app.services.analysis_jobs import AnalysisTask, JobContext
from app.services.compute import forward_gmacs
from app.services.errors import UnusableRequestError
from app.services.inputs import ModelInput, prepare_input
from app.services.models import StoredModel, takes_images
from engine.datasets import mnist
from engine.graph import INPUT, Graph
from engine.learned.features import BATCH_SIZE, MAX_FEATURES, FeatureLayout, extract_features, layout
from engine.learned.neighbours import nearest
from engine.learned.probes import L2, MAX_ITER, TOL, probe_nodes, train_probe
from engine.learned.projection import TSNEConfig, pca, tsne

PROJECTION_KIND = "projection"
PROBES_KIND = "probes"
METHODS = ("pca", "tsne")
DIGIT_SHAPE = (1, 28, 28)
DATASET = "the 2,000 held-out shipped MNIST digits (the test split, digits 8,000 to 9,999)"
TSNE = TSNEConfig()
PREVIEW_EVERY = 50
PROBE_FEATURE_BYTES = 256 * 2**20
PROBE_MAX_ITER = MAX_ITER
SPRITE_URL = "/api/datasets/digits/test-sprite.png"
SPRITE_COLUMNS = 50
MAX_NEIGHBOURS = 16
NODE_SELECTION = ("'input' (the normalised pixels), then each node up to the logits that ends a stage of the "
                  "computation: a node is left out when its only reader refines it in place (batch norm, an "
                  "activation, a softmax: conv -> bn -> relu is shown once, after the ReLU) or when it only "
                  "rearranges values already shown (flatten, reshape, dropout); at most 32, evenly spread")
PROBE_METHOD = ("multinomial logistic regression (softmax regression) on the node's features standardised with the "
                "training digits' mean and standard deviation, with an L2 penalty on the weights, trained by "
                "full-batch L-BFGS from zero (deterministic)")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


class NotDigitModelError(UnusableRequestError):
    """A model that does not read the shipped digits (its input is not [1, 28, 28])."""

    def __init__(self, model: StoredModel, reason: str) -> None:
        super().__init__(f"projections and probes use the shipped MNIST digits, images of shape [1, 28, 28]; model "
                         f"'{model.id}' {reason}. Use digits_classic, digits_resnet, digits_lstm, "
                         "digits_gru_attention or a network trained on digits in the training lab")


class NotImageModelError(UnusableRequestError):
    """A model that does not read pictures: the sample photos cannot be fed to it."""

    def __init__(self, model: StoredModel) -> None:
        shape = list(model.graph.input_shape)
        super().__init__(f"nearest neighbours compare the shipped sample photos, and model '{model.id}' takes "
                         f"tensors of shape {shape}, not pictures (a square image with 1 or 3 channels): use an "
                         "image model such as efficientnet_lite0")


# --- what applies ---------------------------------------------------------------------------------------------------

def digits_reason(model: StoredModel) -> str | None:
    """Why the model cannot read the shipped digits (None when it can)."""
    shape = tuple(model.graph.input_shape)
    if shape != DIGIT_SHAPE:
        return f"takes inputs of shape {list(shape)}"
    if len(model.bundle.preprocessing.mean) != 1 or len(model.bundle.preprocessing.std) != 1:
        return "normalises more than one channel"
    return None


def check_digit_model(model: StoredModel) -> None:
    reason = digits_reason(model)
    if reason is not None:
        raise NotDigitModelError(model, reason)


def feature_info(graph: Graph, node: str) -> FeatureInfo:
    found = layout(graph, node, MAX_FEATURES)
    return _info(found)


def _info(found: FeatureLayout) -> FeatureInfo:
    return FeatureInfo(node=found.node, shape=list(found.shape), grid=list(found.grid), size=found.size,
                       pooled=found.pooled, description=found.describe())


def support(model: StoredModel) -> RepresentationsSupport:
    """What the view can show for ``model``."""
    reason = digits_reason(model)
    nodes = probe_nodes(model.graph)
    return RepresentationsSupport(
        model_id=model.id, takes_digits=reason is None,
        digits_reason=None if reason is None else f"model '{model.id}' {reason}: the shipped digits are [1, 28, 28]",
        takes_images=takes_images(model.graph), nodes=nodes, default_node=nodes[-2] if len(nodes) > 1 else nodes[0],
        node_selection=NODE_SELECTION, max_features=MAX_FEATURES, sprite=sprite_info() if reason is None else None)


def digits_for(model: StoredModel, split: mnist.Split) -> tuple[np.ndarray, np.ndarray]:
    """The shipped digits of ``split`` as ``model`` reads them: ``x: (N, 1, 28, 28)`` float32, ``y: (N,)``."""
    x, y = mnist.load_mnist(split, normalize=False)
    pre = model.bundle.preprocessing
    x = (x - np.float32(pre.mean[0])) / np.float32(pre.std[0])
    return x.astype(np.float32, copy=False), y


# --- projections ----------------------------------------------------------------------------------------------------

def projection_task(model: StoredModel, node: str, method: str) -> AnalysisTask:
    """The analysis job embedding the held-out digits at ``node`` by ``method`` (checked first)."""
    check_digit_model(model)
    model.graph.check_node_or_input(node)
    if method not in METHODS:  # the route's Literal refuses it first
        raise UnusableRequestError(f"method must be one of {', '.join(METHODS)}, got '{method}'")
    pre = model.bundle.preprocessing
    key: dict[str, Any] = {"node": node, "method": method, "points": "mnist-test-2000", "features": MAX_FEATURES,
                           "mean": list(pre.mean), "std": list(pre.std), "format": 1}
    if method == "tsne":
        key.update(perplexity=TSNE.perplexity, iterations=TSNE.iterations, seed=TSNE.seed,
                   learning_rate=TSNE.learning_rate, initial_dims=TSNE.initial_dims)
    return AnalysisTask(kind=PROJECTION_KIND, model_id=model.id, version=model.version, key=key,
                        run=lambda ctx: compute_projection(model, node, method, ctx))


def compute_projection(model: StoredModel, node: str, method: str, ctx: JobContext) -> dict[str, Any]:
    """The job: features of the held-out digits at ``node``, then PCA or t-SNE; progress in batches then steps."""
    started = time.perf_counter()
    graph = model.graph
    x, labels = digits_for(model, "test")
    batches = math.ceil(len(x) / BATCH_SIZE)
    total = batches + (TSNE.iterations if method == "tsne" else 1)
    ctx.progress(0, total)
    features = extract_features(graph, model.bundle.params, x, [node],
                                progress=lambda done, _: ctx.progress(math.ceil(done / BATCH_SIZE), total))[node]
    base: dict[str, Any] = {
        "model_id": model.id, "node": node, "features": feature_info(graph, node), "points": len(x),
        "dataset": DATASET, "labels": labels.tolist(),
        "indices": list(range(mnist.TRAIN_SIZE, mnist.TRAIN_SIZE + len(x))), "classes": _classes(model),
        "sprite": sprite_info()}
    if method == "pca":
        found = pca(features, 2)
        ctx.progress(total, total)
        ratio = found.explained_variance_ratio
        answer: PCAProjection | TSNEProjection = PCAProjection(
            **base, x=found.coords[:, 0].tolist(), y=found.coords[:, 1].tolist(),
            explained_variance_ratio=ratio.tolist(), explained_variance_total=float(ratio.sum()),
            seconds=round(time.perf_counter() - started, 2))
        return answer.model_dump()

    def snapshot(done: int, embedding: np.ndarray) -> None:
        if done % PREVIEW_EVERY == 0 or done == TSNE.iterations:
            buffer = io.BytesIO()
            np.save(buffer, embedding.astype(np.float32), allow_pickle=False)
            ctx.preview(f"embedding-{done:04d}.npy", buffer.getvalue())

    found = tsne(features, TSNE, progress=lambda done, _: ctx.progress(batches + done, total), snapshot=snapshot)
    reduced = features.shape[1] > TSNE.initial_dims
    answer = TSNEProjection(
        **base, x=found.embedding[:, 0].tolist(), y=found.embedding[:, 1].tolist(), perplexity=TSNE.perplexity,
        iterations=TSNE.iterations, learning_rate=TSNE.learning_rate, exaggeration=TSNE.exaggeration,
        exaggeration_iterations=TSNE.exaggeration_iterations, seed=TSNE.seed,
        pca_dims=TSNE.initial_dims if reduced else None, pca_variance_ratio=found.pca_variance_ratio,
        final_kl=found.final_kl, kl=[KLRecord(iteration=i, kl=kl) for i, kl in found.kl],
        seconds=round(time.perf_counter() - started, 2))
    return answer.model_dump()


def _classes(model: StoredModel) -> list[str]:
    labels = model.bundle.labels
    return list(labels) if len(labels) == 10 else [str(d) for d in range(10)]


def projection_answer(result: dict[str, Any]) -> PCAProjection | TSNEProjection:
    """A stored projection as its response model."""
    return PCAProjection(**result) if result["method"] == "pca" else TSNEProjection(**result)


# --- probes ---------------------------------------------------------------------------------------------------------

def probes_task(model: StoredModel) -> AnalysisTask:
    """The analysis job training a probe at every chosen node of ``model``."""
    check_digit_model(model)
    nodes = probe_nodes(model.graph)
    pre = model.bundle.preprocessing
    key = {"nodes": nodes, "l2": L2, "max_iter": PROBE_MAX_ITER, "tol": TOL, "features": MAX_FEATURES,
           "mean": list(pre.mean), "std": list(pre.std), "split": "mnist 8000/2000", "format": 1}
    return AnalysisTask(kind=PROBES_KIND, model_id=model.id, version=model.version, key=key,
                        run=lambda ctx: compute_probes(model, nodes, ctx))


def _groups(graph: Graph, nodes: list[str], images: int) -> list[list[str]]:
    """``nodes`` in runs whose features (``images`` float32 rows each) fit ``PROBE_FEATURE_BYTES`` together."""
    groups: list[list[str]] = [[]]
    used = 0
    for node in nodes:
        size = layout(graph, node, MAX_FEATURES).size * images * 4
        if groups[-1] and used + size > PROBE_FEATURE_BYTES:
            groups.append([])
            used = 0
        groups[-1].append(node)
        used += size
    return groups


def compute_probes(model: StoredModel, nodes: list[str], ctx: JobContext) -> dict[str, Any]:
    """The job: per group of nodes, the 10,000 digits' features, then a probe per node; progress in nodes."""
    started = time.perf_counter()
    graph = model.graph
    x, labels = digits_for(model, "all")
    train, test = slice(0, mnist.TRAIN_SIZE), slice(mnist.TRAIN_SIZE, None)
    ctx.progress(0, len(nodes))
    layers: list[ProbeLayer] = []
    for group in _groups(graph, nodes, len(x)):
        features = extract_features(graph, model.bundle.params, x, group,
                                    progress=lambda done, total: ctx.check_cancelled())
        for node in group:
            found = train_probe(features[node][train], labels[train], features[node][test], labels[test], classes=10,
                                max_iter=PROBE_MAX_ITER, progress=lambda _: ctx.check_cancelled())
            del features[node]
            layers.append(ProbeLayer(
                node=node, op="input" if node == INPUT else graph.node(node).op.op,
                features=feature_info(graph, node), train_accuracy=found.train_accuracy,
                test_accuracy=found.test_accuracy, train_loss=found.train_loss, test_loss=found.test_loss,
                iterations=found.iterations, converged=found.converged))
            ctx.progress(len(layers), len(nodes))
    majority = np.bincount(labels[train], minlength=10).argmax()
    return ProbesResponse(
        model_id=model.id, probes=layers, node_selection=NODE_SELECTION, method=PROBE_METHOD,
        train_size=mnist.TRAIN_SIZE, test_size=len(x) - mnist.TRAIN_SIZE, classes=10,
        chance=float(np.mean(labels[test] == majority)), l2=L2, max_iter=PROBE_MAX_ITER, tol=TOL,
        seconds=round(time.perf_counter() - started, 2)).model_dump()


# --- neighbours -----------------------------------------------------------------------------------------------------

def sample_photos(samples: list[dict[str, str]], directory: Path) -> list[dict[str, Any]]:
    """The shipped sample photos (``app.web.pages.sample_images``' photos) with their paths."""
    return [{**sample, "path": directory / sample["file"]} for sample in samples
            if sample.get("kind") == "photo" and Path(sample["file"]).suffix.lower() in PHOTO_SUFFIXES]


def find_neighbours(model: StoredModel, model_input: ModelInput, node: str, k: int, photos: list[dict[str, Any]],
                    max_bytes: int, max_pixels: int, max_elements: int,
                    compute: Callable[..., AbstractContextManager[None]]) -> NeighboursResponse:
    """The ``k`` sample photos most similar to the input at ``node`` (cosine of the features)."""
    graph = model.graph
    if not takes_images(graph):
        raise NotImageModelError(model)
    graph.check_node_or_input(node)
    if not 1 <= k <= MAX_NEIGHBOURS:  # the route's bounds refuse it first
        raise UnusableRequestError(f"k must be 1 to {MAX_NEIGHBOURS}, got {k}")
    if not photos:
        raise UnusableRequestError("this server has no sample photos (static/samples) to compare with")
    query = prepare_input(model_input, model, max_bytes, max_pixels, max_elements).x
    pre = model.bundle.preprocessing
    gallery = []
    for photo in photos:
        try:
            picture = prepare_image(Path(photo["path"]).read_bytes(), pre, max_bytes, max_pixels)
        except (OSError, ImageError) as exc:
            raise UnusableRequestError(f"the sample photo '{photo['file']}' cannot be read ({exc})") from exc
        gallery.append(pre.normalize(picture))
    batch = np.concatenate([query.astype(np.float32), *gallery])
    with compute(gmacs=forward_gmacs(graph, len(batch))):
        features = extract_features(graph, model.bundle.params, batch, [node])[node]
    found = nearest(features[0], features[1:], k)
    neighbours = [Neighbour(rank=rank, file=photos[n.index]["file"], name=photos[n.index]["name"],
                            url=f"/static/samples/{photos[n.index]['file']}", similarity=n.similarity)
                  for rank, n in enumerate(found, start=1)]
    return NeighboursResponse(model_id=model.id, node=node, features=feature_info(graph, node),
                              similarity="cosine: a.b / (|a| |b|) of the two feature vectors", gallery=len(photos),
                              k=k, neighbours=neighbours)


# --- the sprite sheet -----------------------------------------------------------------------------------------------

def sprite_info() -> SpriteInfo:
    _, labels = mnist.load_raw()
    count, cell = mnist.TEST_SIZE, 28
    rows = math.ceil(count / SPRITE_COLUMNS)
    return SpriteInfo(url=SPRITE_URL, count=count, columns=SPRITE_COLUMNS, cell=cell, width=SPRITE_COLUMNS * cell,
                      height=rows * cell, labels=labels[mnist.TRAIN_SIZE:mnist.TRAIN_SIZE + count].tolist())


@lru_cache(maxsize=1)
def sprite_png() -> bytes:
    """The held-out digits as one grey PNG: digit i at row i // 50, column i % 50, 28 x 28 pixels each."""
    images, _ = mnist.load_raw()
    digits = images[mnist.TRAIN_SIZE:mnist.TRAIN_SIZE + mnist.TEST_SIZE]
    info = sprite_info()
    sheet = np.zeros((info.height, info.width), np.uint8)
    for i, digit in enumerate(digits):
        row, column = divmod(i, SPRITE_COLUMNS)
        sheet[row * 28:(row + 1) * 28, column * 28:(column + 1) * 28] = digit
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG", optimize=True)  # uint8 (H, W): grey
    return buffer.getvalue()
