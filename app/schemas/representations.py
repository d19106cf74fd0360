"""Representations, from the pixels to the last layer: the held-out digits embedded in 2D at a node (PCA, t-SNE),
linear probes per layer, and a photo's nearest sample photos at a node."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class FeatureInfo(BaseModel):
    """How one node's activation became the feature vector compared (``engine.learned.features``)."""

    node: str = Field(..., description="the node ('input': the raw input, the normalised pixels)", examples=["relu1"])
    shape: list[int] = Field(..., description="the node's output shape for one example", examples=[[8, 28, 28]])
    grid: list[int] = Field(..., description="the shape after pooling (the shape itself when nothing was pooled)",
                            examples=[[8, 16, 16]])
    size: int = Field(..., description="features per example: the product of `grid`", examples=[2048])
    pooled: bool = Field(..., description="the spatial axes were average-pooled to fit `max_features`",
                         examples=[True])
    description: str = Field(..., description="the same in words", examples=[
        "the activation (8 x 28 x 28, 6,272 values) average-pooled over its spatial axes to 8 x 16 x 16 (adaptive "
        "average pooling, as PyTorch cuts the windows), flattened: 2,048 features"])


class SpriteInfo(BaseModel):
    """One PNG holding every held-out digit, to draw the digit under the mouse without a request per digit."""

    url: str = Field(..., description="GET: the sprite sheet (grey PNG, white digits on black, as stored)",
                     examples=["/api/datasets/digits/test-sprite.png"])
    count: int = Field(..., description="digits in the sheet", examples=[2000])
    columns: int = Field(..., description="digits per row; digit i is at row i // columns, column i % columns",
                         examples=[50])
    cell: int = Field(..., description="each digit's side in pixels", examples=[28])
    width: int = Field(..., description="the sheet's width in pixels", examples=[1400])
    height: int = Field(..., description="the sheet's height in pixels", examples=[1120])
    labels: list[int] = Field(..., description="each digit's label, 0-9, in the sheet's order (the projections' "
                                               "points are in the same order)", examples=[[7, 2, 1, 0, 4]])


class RepresentationsSupport(BaseModel):
    """What the representations view can show for a model, before anything is computed."""

    model_id: str = Field(..., description="the model", examples=["digits_classic"])
    takes_digits: bool = Field(..., description="the model reads the shipped digits (input [1, 28, 28]): projections "
                                                "and probes apply", examples=[True])
    digits_reason: str | None = Field(None, description="why projections and probes do not apply, when they do not",
                                      examples=[None])
    takes_images: bool = Field(..., description="the model reads pictures: nearest sample photos apply",
                               examples=[True])
    nodes: list[str] = Field(..., description="the nodes the view offers ('input' first), chosen as for the probes: "
                                              "each node that ends a stage, up to the logits (any node of the model "
                                              "is accepted)", examples=[["input", "relu1", "pool1", "relu2", "pool2",
                                                                         "fc"]])
    default_node: str = Field(..., description="the node shown first: the last before the logits",
                              examples=["pool2"])
    node_selection: str = Field(..., description="how `nodes` were chosen, in words",
                                examples=["'input' (the normalised pixels), then each node up to the logits that "
                                          "ends a stage of the computation; at most 32, evenly spread"])
    max_features: int = Field(..., description="the bound on a feature vector's length (pooling beyond it)",
                              examples=[2048])
    sprite: SpriteInfo | None = Field(None, description="the held-out digits' sprite sheet (digit models)",
                                      examples=[None])


class KLRecord(BaseModel):
    """KL(P || Q) after some steps of gradient descent."""

    iteration: int = Field(..., description="steps taken", examples=[1000])
    kl: float = Field(..., description="KL(P || Q) in nats, with the true (unexaggerated) P", examples=[1.04])


class ProjectionBase(BaseModel):
    """The 2,000 held-out digits at one node, drawn in 2D: point i is held-out digit i."""

    model_id: str = Field(..., description="the model", examples=["digits_classic"])
    node: str = Field(..., description="the node whose features are used", examples=["pool2"])
    features: FeatureInfo = Field(..., description="the feature vector: its shape, and how it was pooled")
    points: int = Field(..., description="points: the held-out digits", examples=[2000])
    dataset: str = Field(..., description="what the points are",
                         examples=["the 2,000 held-out shipped MNIST digits (the test split, digits 8,000 to 9,999)"])
    x: list[float] = Field(..., description="each point's first coordinate (point i: held-out digit i)",
                         examples=[[-3.1, 0.4, 12.7]])
    y: list[float] = Field(..., description="each point's second coordinate", examples=[[5.2, -8.9, 1.3]])
    labels: list[int] = Field(..., description="each point's true digit, 0-9", examples=[[7, 2, 1]])
    indices: list[int] = Field(..., description="each point's index among the 10,000 shipped digits (GET "
                                                "/api/digits/{index}.png draws one)", examples=[[8000, 8001, 8002]])
    classes: list[str] = Field(..., description="the class names, by label", examples=[[str(d) for d in range(10)]])
    sprite: SpriteInfo = Field(..., description="the held-out digits' sprite sheet, to draw a point's digit")
    seconds: float = Field(..., description="the computation's wall time, features included", examples=[16.2])


class PCAProjection(ProjectionBase):
    """PCA: the centred features on their two principal axes (x: the first, y: the second)."""

    method: Literal["pca"] = Field("pca", description="the projection: PCA", examples=["pca"])
    explained_variance_ratio: list[float] = Field(..., description="the share of the features' total variance along "
                                                                   "each axis", examples=[[0.097, 0.071]])
    explained_variance_total: float = Field(..., description="the two axes' shares together", examples=[0.168])


class TSNEProjection(ProjectionBase):
    """t-SNE (exact, van der Maaten & Hinton 2008, with the reference implementation's settings): neighbours in the
    features stay neighbours in 2D; distances between clusters and cluster sizes mean little."""

    method: Literal["tsne"] = Field("tsne", description="the projection: t-SNE", examples=["tsne"])
    perplexity: float = Field(..., description="the effective number of neighbours each point's P calibrates to",
                              examples=[30.0])
    iterations: int = Field(..., description="gradient steps", examples=[1000])
    learning_rate: float = Field(..., description="on the exact gradient (the reference's 500 on a gradient without "
                                                  "its factor 4)", examples=[125.0])
    exaggeration: float = Field(..., description="P multiplied by this during the first steps", examples=[4.0])
    exaggeration_iterations: int = Field(..., description="steps with P exaggerated", examples=[100])
    seed: int = Field(..., description="the random start's seed", examples=[0])
    pca_dims: int | None = Field(..., description="the features were first reduced by PCA to this many dimensions "
                                                  "(null: they had fewer)", examples=[50])
    pca_variance_ratio: float = Field(..., description="the share of variance that PCA kept (1 without it)",
                                      examples=[0.83])
    final_kl: float = Field(..., description="KL(P || Q) of the answer's embedding, in nats", examples=[1.04])
    kl: list[KLRecord] = Field(..., description="KL(P || Q) every 10 steps, from the random start",
                               examples=[[{"iteration": 10, "kl": 4.91}, {"iteration": 1000, "kl": 1.04}]])


Projection = Annotated[PCAProjection | TSNEProjection, Field(discriminator="method")]


class ProbeLayer(BaseModel):
    """One linear probe: softmax regression on one node's features."""

    node: str = Field(..., description="the node whose features are used", examples=["pool2"])
    op: str = Field(..., description="the node's op ('input' for the pixels)", examples=["max_pool2d"])
    features: FeatureInfo = Field(..., description="the feature vector: its shape, and how it was pooled")
    train_accuracy: float = Field(..., description="on the 8,000 training digits it was fitted to, 0-1",
                                  examples=[1.0])
    test_accuracy: float = Field(..., description="on the 2,000 held-out digits, 0-1", examples=[0.9865])
    train_loss: float = Field(..., description="the objective at the end: mean cross-entropy + (l2/2)|W|^2",
                              examples=[0.026])
    test_loss: float = Field(..., description="mean cross-entropy on the held-out digits", examples=[0.05])
    iterations: int = Field(..., description="L-BFGS iterations", examples=[21])
    converged: bool = Field(..., description="the largest gradient entry fell below `tol` (else it stopped at "
                                             "`max_iter`)", examples=[True])


class ProbesResponse(BaseModel):
    """Per layer, how well a linear classifier reads the digit from the features: the raw pixels first."""

    model_id: str = Field(..., description="the model", examples=["digits_classic"])
    probes: list[ProbeLayer] = Field(..., description="in graph order, 'input' (the pixels: the baseline) first",
                                     examples=[[{"node": "input", "op": "input", "test_accuracy": 0.9}]])
    node_selection: str = Field(..., description="which nodes were probed, and why",
                                examples=["'input' (the normalised pixels), then each node up to the logits that "
                                          "ends a stage of the computation; at most 32, evenly spread"])
    method: str = Field(..., description="the probe and how it was trained", examples=[
        "multinomial logistic regression (softmax regression) with an L2 penalty on the weights"])
    train_size: int = Field(..., description="training digits the probes were fitted to", examples=[8000])
    test_size: int = Field(..., description="held-out digits they were tested on", examples=[2000])
    classes: int = Field(..., description="classes the probes choose among", examples=[10])
    chance: float = Field(..., description="the held-out accuracy of always answering the most frequent training "
                                           "class", examples=[0.1135])
    l2: float = Field(..., description="the penalty's weight", examples=[0.001])
    max_iter: int = Field(..., description="the most L-BFGS iterations a probe may take", examples=[500])
    tol: float = Field(..., description="convergence: the largest gradient entry at most this", examples=[0.0001])
    seconds: float = Field(..., description="the computation's wall time", examples=[14.0])


class Neighbour(BaseModel):
    """One sample photo and how alike the node finds it."""

    rank: int = Field(..., description="1 for the most similar", examples=[1])
    file: str = Field(..., description="the sample's file name", examples=["cat.jpg"])
    name: str = Field(..., description="its name", examples=["cat"])
    url: str = Field(..., description="GET: the photo", examples=["/static/samples/cat.jpg"])
    similarity: float = Field(..., description="cosine similarity of the two feature vectors, -1 to 1",
                              examples=[0.83])


class NeighboursResponse(BaseModel):
    """The sample photos nearest to an input at one node, by cosine similarity of the node's features."""

    model_id: str = Field(..., description="the model", examples=["efficientnet_lite0"])
    node: str = Field(..., description="the node whose features are compared", examples=["head.relu6"])
    features: FeatureInfo = Field(..., description="the feature vector: its shape, and how it was pooled")
    similarity: str = Field(..., description="the measure", examples=["cosine: a.b / (|a| |b|)"])
    gallery: int = Field(..., description="sample photos compared", examples=[4])
    k: int = Field(..., description="neighbours asked for (at most the gallery's size are returned)", examples=[3])
    neighbours: list[Neighbour] = Field(..., description="the nearest sample photos, most similar first")
