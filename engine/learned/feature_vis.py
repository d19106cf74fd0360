"""Feature visualisation by optimisation: the picture that makes a channel (or a unit, or a class's logit) fire most.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017, as Lucid implements it (``render_vis``):
start from a faint random picture and climb the objective's gradient, computed by the engine's own backward
pass, with three things that keep the result readable instead of adversarial noise:

1. the picture is a Fourier spectrum scaled by 1 / frequency, with decorrelated colours and a sigmoid
   (:mod:`engine.learned.image_param`);
2. each step sees the picture randomly shifted, scaled and rotated (:mod:`engine.learned.transforms`);
3. Adam on the spectrum (Lucid's learning rate, 0.05 for its 128-pixel pictures, scaled by 128 / size:
   with the spectrum's scaling an Adam step moves a pixel by up to about ``lr × size``, so a 28-pixel digit
   would otherwise change 4.6 times more slowly than a 128-pixel photo),

and Lucid's redirected ReLU gradient (:mod:`engine.learned.redirected_relu`), so that a channel the picture
leaves at zero still gets a gradient.

One step, for a picture of ``C × H × W`` and the model's input ``(1, C, H, W)``::

    spectrum --image_param--> pixels --normalise--> x --transform--> x' --graph.forward(stop_at=node)--> a
    objective(a) --graph.backward(params=False)--> dx' --> dx --> dpixels --> dspectrum --Adam (ascent)--> spectrum

The forward pass stops at the objective's node and the backward pass computes the input's gradient only, so
an early layer costs a fraction of the whole network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from engine.errors import ShapeError, SpecError
from engine.graph import Graph
from engine.learned.image_param import ImageParametrisation, normalise_backward, normalise_forward
from engine.learned.objectives import Objective
from engine.learned.redirected_relu import redirected_relu_rule
from engine.learned.transforms import RobustnessTransforms, bilinear_sample_backward, bilinear_sample_forward
from engine.models.bundle import Preprocessing
from engine.training import Adam

#: Lucid's default optimiser: Adam with learning rate 0.05, for its default 128 × 128 pictures
LUCID_LEARNING_RATE = 0.05
LUCID_SIZE = 128


def default_learning_rate(height: int, width: int) -> float:
    """Lucid's 0.05 at 128 pixels, scaled by ``128 / max(H, W)`` (see the module's docstring): 0.229 at 28."""
    return LUCID_LEARNING_RATE * LUCID_SIZE / max(height, width)


#: progress(done, total, pixels): after each step, the current picture (C, H, W) in [0, 1]
ProgressFn = Callable[[int, int, np.ndarray], None]


@dataclass(frozen=True)
class FeatureVisConfig:
    """How to optimise: ``steps`` of Adam at ``learning_rate`` (None: :func:`default_learning_rate` for the picture's
    size), ``seed`` for the starting picture and the transforms."""

    steps: int = 128
    learning_rate: float | None = None
    seed: int = 0
    transforms: RobustnessTransforms = field(default_factory=RobustnessTransforms)
    decay_power: float = 1.0
    #: the steps that use the redirected ReLU gradient (Lucid: the first 16; None: every step)
    redirected_steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be zero or more, got {self.steps}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"the learning rate must be positive, got {self.learning_rate}")


@dataclass
class FeatureVisResult:
    """pixels: (C, H, W) in [0, 1], the picture; model_input: (1, C, H, W), the model's normalised input for it.

    ``start`` and ``end``: the objective on the starting and on the final picture (without transforms);
    ``history``: the objective each step saw (on its transformed picture), one per step; ``learning_rate``: the
    one used.
    """

    pixels: np.ndarray
    model_input: np.ndarray
    start: float
    end: float
    history: list[float]
    learning_rate: float


# --- the model's picture ------------------------------------------------------------------------------------

def image_shape(graph: Graph) -> tuple[int, int, int]:
    """The model's input as a picture ``(C, H, W)``, or ShapeError saying why it is not one."""
    shape = graph.input_shape
    if len(shape) != 3:
        raise ShapeError(f"this model's input has shape {list(shape)}, not a picture (channels, height, width): "
                         "feature visualisation draws the input that maximises the objective, so it needs a model "
                         "whose input is an image")
    if shape[0] not in (1, 3):
        raise ShapeError(f"this model's input has {shape[0]} channels; a picture has 1 (grey) or 3 (RGB)")
    return shape  # type: ignore[return-value]


def graph_at_size(graph: Graph, params: Mapping[str, np.ndarray], height: int, width: int) -> Graph:
    """The same network built for ``(C, height, width)`` inputs, the weights unchanged; the graph itself if that is
    its size. ShapeError, in the user's terms, when the architecture fixes its input size (a fully connected layer
    after a flatten reads one weight per position; networks that end in global pooling take any size)."""
    channels, own_height, own_width = image_shape(graph)
    if (height, width) == (own_height, own_width):
        return graph
    spec = {"input_shape": [channels, height, width], "nodes": graph.spec["nodes"]}
    try:
        resized = Graph(spec)
    except SpecError as exc:
        raise ShapeError(f"this network cannot take {height} × {width} inputs: {exc}; "
                         f"use its own size, {own_height} × {own_width}") from None
    own = graph.param_shapes()
    for name, shape in resized.param_shapes().items():
        if own.get(name) != shape:
            node = name.rsplit(".", 1)[0]
            raise ShapeError(
                f"this network cannot take {height} × {width} inputs: '{node}' would need weights of shape "
                f"{list(shape)} but has {list(own.get(name, ()))}: the number of values reaching it depends on the "
                f"picture's size (a fully connected layer after a flatten); use its own size, "
                f"{own_height} × {own_width} (networks that end in global pooling take any size)")
    resized.check_params(params)
    return resized


# --- objective values ------------------------------------------------------------------------------------------

def objective_values(graph: Graph, params: Mapping[str, np.ndarray], objective: Objective, x: np.ndarray,
                     batch_size: int = 256) -> np.ndarray:
    """The objective on each input, ``x: (N, *input_shape)`` -> ``(N,)`` float64 (a lean pass to its node)."""
    values = [objective.value(graph.forward(x[i:i + batch_size], params, keep_caches=False,
                                            stop_at=objective.node, keep=()).output)
              for i in range(0, len(x), batch_size)]
    return np.concatenate(values) if values else np.zeros(0)


def picture_uint8(pixels: np.ndarray) -> np.ndarray:
    """pixels: (C, H, W) in [0, 1] -> (H, W, C) uint8, rounded (what a PNG stores)."""
    return np.clip(np.rint(pixels.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)


# --- the optimisation -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One visualisation's fixed parts: the network (at the picture's size), its weights, the objective, the
    picture's parametrisation and the model's normalisation."""

    graph: Graph
    params: Mapping[str, np.ndarray]
    objective: Objective
    image: ImageParametrisation
    preprocessing: Preprocessing

    @property
    def dtype(self) -> np.dtype:
        return next((p.dtype for p in self.params.values() if p.dtype.kind == "f"), np.dtype(np.float32))

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """pixels: (C, H, W) -> the model's input (1, C, H, W) in the weights' dtype."""
        p = self.preprocessing
        return normalise_forward(pixels, p.mean, p.std, p.invert)[0][None].astype(self.dtype)

    def value(self, spectrum: np.ndarray) -> float:
        """The objective on the picture ``spectrum`` describes, untransformed."""
        pixels = self.image.forward(spectrum)[0]
        return float(objective_values(self.graph, self.params, self.objective, self.model_input(pixels))[0])

    def gradient(self, spectrum: np.ndarray, points: tuple[np.ndarray, np.ndarray],
                 redirect: bool = False) -> tuple[float, np.ndarray]:
        """The objective on the picture resampled at ``points`` (``(sy, sx)``, each (H, W)), and its gradient with
        respect to ``spectrum`` (the chain of the module's docstring; ``redirect``: the redirected ReLU rule)."""
        p = self.preprocessing
        pixels, image_cache = self.image.forward(spectrum)
        x, normalise_cache = normalise_forward(pixels, p.mean, p.std, p.invert)
        moved, transform_cache = bilinear_sample_forward(x, *points)
        node = self.objective.node
        trace = self.graph.forward(moved[None].astype(self.dtype), self.params, stop_at=node)
        activation = trace.activations[node]
        value = float(self.objective.value(activation)[0])
        dmoved = self.graph.backward(trace, {node: self.objective.seed(activation)}, params=False,
                                     rule=redirected_relu_rule if redirect else None).input[0]
        dx = bilinear_sample_backward(dmoved.astype(spectrum.dtype), transform_cache)
        return value, self.image.backward(normalise_backward(dx, normalise_cache), image_cache)


def visualise(graph: Graph, params: Mapping[str, np.ndarray], objective: Objective, preprocessing: Preprocessing,
              config: FeatureVisConfig | None = None, progress: ProgressFn | None = None) -> FeatureVisResult:
    """Gradient ascent on ``objective`` from a random picture (see the module's docstring).

    ``graph`` fixes the picture's size (use :func:`graph_at_size` for another); ``preprocessing`` its
    normalisation (mean, std, invert). RGB pictures have decorrelated colours, grey ones a single channel.
    ``progress(done, total, pixels)`` is called after every step.
    """
    config = config or FeatureVisConfig()
    channels, height, width = image_shape(graph)
    graph.node(objective.node)
    image = ImageParametrisation(channels, height, width, decorrelate_colours=channels == 3,
                                 decay_power=config.decay_power)
    problem = Problem(graph, params, objective, image, preprocessing)
    rng = np.random.default_rng(config.seed)
    spectrum = {"spectrum": image.initial_spectrum(rng)}
    learning_rate = config.learning_rate or default_learning_rate(height, width)
    optimiser = Adam(lr=learning_rate)
    start = problem.value(spectrum["spectrum"])
    history: list[float] = []
    for step in range(config.steps):
        points = config.transforms.sample(rng, height, width)
        redirect = config.redirected_steps is None or step < config.redirected_steps
        value, dspectrum = problem.gradient(spectrum["spectrum"], points, redirect)
        history.append(value)
        optimiser.step(spectrum, {"spectrum": -dspectrum})  # Adam descends: ascend by descending -objective
        if progress is not None:
            progress(step + 1, config.steps, image.forward(spectrum["spectrum"])[0])
    pixels = image.forward(spectrum["spectrum"])[0]
    model_input = problem.model_input(pixels)
    end = float(objective_values(graph, params, objective, model_input)[0])
    return FeatureVisResult(pixels=pixels, model_input=model_input, start=start, end=end, history=history,
                            learning_rate=learning_rate)
