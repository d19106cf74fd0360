"""Training a graph on labelled images: optimisers (PyTorch's SGD and Adam), evaluation and a training loop.

The loop is a generator of progress events so that a web job can stream it and stop it::

    trainer = Trainer(graph, (x_train, y_train), (x_test, y_test), TrainConfig(epochs=3, optimizer="adam", lr=1e-3))
    for event in trainer.run():          # one event per batch, one per epoch, one at the end
        print(event.as_dict())           # while the loop is paused here, trainer.params may be read
        if stop_requested:
            trainer.cancel()             # thread-safe; the loop stops before the next batch
    params = trainer.params              # the trained weights (the running statistics included)

Training minimises the mean softmax cross-entropy of the logits (the graph's output, or the input of
a final ``softmax`` node). Batch norm uses batch statistics and dropout is on during training
(``graph.forward(training=True, rng=...)``); evaluation runs in inference mode. Everything random
(initialisation, shuffling, dropout, augmentation) comes from ``TrainConfig.seed``: the same seed
gives bit-identical weights.

L2 weight decay follows PyTorch's ``weight_decay`` (``grad += weight_decay * param`` before the
update) and is applied to the weights of convolutions and fully connected layers only (parameters
with two or more axes), not to biases nor to batch norm's scale and shift, as is usual practice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from engine.graph import Graph
from engine.layers.loss import softmax_cross_entropy

# --- optimisers -------------------------------------------------------------------------------


class Optimizer:
    """Updates parameters in place from their gradients. ``decay_names``: the parameters that take
    weight decay (None: all of them, as in PyTorch when every parameter is in one group)."""

    def __init__(self, lr: float, weight_decay: float = 0.0, decay_names: Collection[str] | None = None) -> None:
        if lr <= 0:
            raise ValueError(f"the learning rate must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be zero or positive, got {weight_decay}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.decay_names = None if decay_names is None else frozenset(decay_names)
        self.state: dict[str, dict[str, Any]] = {}
        self.steps = 0

    def _decayed_grad(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        if self.weight_decay and (self.decay_names is None or name in self.decay_names):
            return grad + self.weight_decay * param
        return grad

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """One update of every parameter that has a gradient in ``grads`` (``params`` is changed in place)."""
        self.steps += 1
        for name, grad in grads.items():
            param = params[name]
            update = self._update(name, param, self._decayed_grad(name, param, grad.astype(param.dtype, copy=False)))
            param -= update

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        b = g (first step), else b = momentum * b + (1 - dampening) * g
        p = p - lr * (g + momentum * b if nesterov else b)
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, decay_names: Collection[str] | None = None) -> None:
        super().__init__(lr, weight_decay, decay_names)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        if self.momentum == 0:
            return self.lr * grad
        state = self.state.setdefault(name, {})
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = np.array(grad, dtype=param.dtype, copy=True)
        else:
            buf *= self.momentum
            buf += (1 - self.dampening) * grad
        direction = grad + self.momentum * buf if self.nesterov else buf
        return self.lr * direction


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (L2 ``weight_decay`` added to the gradient, not AdamW)::

        g = grad + weight_decay * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decay_names: Collection[str] | None = None) -> None:
        super().__init__(lr, weight_decay, decay_names)
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam's betas must be in [0, 1), got {betas}")
        self.betas, self.eps = betas, eps

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        beta1, beta2 = self.betas
        state = self.state.setdefault(name, {})
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
        return (self.lr / (1 - beta1**t)) * m / denom


def default_decay_names(graph: Graph) -> list[str]:
    """The parameters weight decay applies to: trainable ones with two or more axes (conv and linear weights)."""
    shapes = graph.param_shapes()
    return [name for name in graph.trainable_names() if len(shapes[name]) >= 2]


# --- evaluation -------------------------------------------------------------------------------


def logits_node(graph: Graph) -> str:
    """The node whose output the loss reads: the graph's output, or the input of a final softmax."""
    last = graph.by_id[graph.output_id]
    if last.op.op == "softmax":
        return last.inputs[0]
    return graph.output_id


def predict_logits(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits in inference mode, ``x: (N, *input_shape)`` -> ``(N, K)``, computed ``batch_size`` at a time."""
    node = logits_node(graph)
    chunks = []
    for i in range(0, len(x), batch_size):
        trace = graph.forward(x[i:i + batch_size], params, training=False, keep_caches=False, stop_at=node, keep=())
        chunks.append(trace.output)
    return np.concatenate(chunks)


def evaluate(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
             batch_size: int = 500) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (fraction correct) in inference mode."""
    logits = predict_logits(graph, params, x, batch_size)
    loss, _ = softmax_cross_entropy(logits.astype(np.float64), y)
    return loss, float((logits.argmax(axis=1) == y).mean())


# --- data augmentation ------------------------------------------------------------------------


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels in each direction, filling with the corner value.

    x: (N, C, H, W) -> (N, C, H, W). The fill is ``x[..., 0, 0]`` of each image, the background of a digit.
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    s = max_shift
    padded = np.empty((*x.shape[:2], h + 2 * s, w + 2 * s), dtype=x.dtype)
    padded[...] = x[:, :, :1, :1]
    padded[:, :, s:s + h, s:s + w] = x
    offsets = rng.integers(0, 2 * s + 1, size=(n, 2))
    return np.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


# --- the training loop ------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """How to train. Defaults suit the shipped digits."""

    epochs: int = 5
    batch_size: int = 64
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # Adam only
    weight_decay: float = 0.0
    #: "constant", or "cosine": from ``lr`` down to 0 over all the steps
    lr_schedule: Literal["constant", "cosine"] = "constant"
    #: random translation of training images by up to this many pixels (0: none)
    augment_shift: int = 0
    seed: int = 0
    #: emit a "batch" event every this many batches
    progress_every: int = 1
    #: evaluate on the test data (when given) at the end of every epoch
    eval_each_epoch: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' (with momentum) or 'adam', got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.progress_every < 1:
            raise ValueError(f"progress_every must be at least 1, got {self.progress_every}")

    def make_optimizer(self, decay_names: Collection[str] | None) -> Optimizer:
        if self.optimizer == "adam":
            return Adam(self.lr, self.betas, weight_decay=self.weight_decay, decay_names=decay_names)
        return SGD(self.lr, self.momentum, weight_decay=self.weight_decay, decay_names=decay_names)


@dataclass
class Progress:
    """One progress event. ``kind``: "batch" (after a batch), "epoch" (after an epoch and its evaluation),
    "done" (training finished) or "cancelled" (stopped by ``Trainer.cancel``).

    ``loss`` / ``accuracy`` are the running means over the epoch so far (training mode, on the
    training batches); ``test_loss`` / ``test_accuracy`` are set on "epoch" and "done" events when
    test data was given. Times are in seconds; ``eta`` estimates the time left.
    """

    kind: Literal["batch", "epoch", "done", "cancelled"]
    epoch: int  # 1-based; 0 before the first batch
    epochs: int
    batch: int  # 1-based, within the epoch
    batches: int  # per epoch
    step: int  # batches done since the start
    loss: float | None  # None before the first batch of the epoch
    accuracy: float | None
    lr: float
    elapsed: float
    eta: float | None  # None until a batch has been timed
    test_loss: float | None = None
    test_accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trainer:
    """Trains ``graph`` on ``train = (x: (N, *input_shape) float32, y: (N,) int)``; see the module docstring.

    ``params``: start from these (fine-tuning; they are copied, never changed) instead of a fresh
    initialisation with ``config.seed``. ``decay_names``: override which parameters take weight decay.
    """

    graph: Graph
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None = None
    config: TrainConfig = field(default_factory=TrainConfig)
    params: dict[str, np.ndarray] | None = None
    decay_names: Collection[str] | None = None
    history: list[Progress] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        x, y = self.train
        self.graph.check_input(x[:1])
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need as many labels as images (and at least one), "
                             f"got {len(x)} images and {len(y)} labels")
        seeds = np.random.SeedSequence(self.config.seed).spawn(3)
        self._shuffle_rng = np.random.default_rng(seeds[0])
        self._dropout_rng = np.random.default_rng(seeds[1])
        self._augment_rng = np.random.default_rng(seeds[2])
        if self.params is None:
            self.params = self.graph.init_params(self.config.seed)
        else:
            self.graph.check_params(self.params)
            self.params = {k: np.array(v, dtype=np.float32, copy=True) for k, v in self.params.items()}
        if self.decay_names is None:
            self.decay_names = default_decay_names(self.graph)
        self.optimizer = self.config.make_optimizer(self.decay_names)
        self._logits = logits_node(self.graph)
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the loop to stop before its next batch (safe to call from another thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate for batch ``step`` (0-based) of ``total_steps``."""
        if self.config.lr_schedule == "cosine":
            return self.config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
        return self.config.lr

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """One forward/backward/update on a batch ``x: (B, *input_shape)``; returns the batch loss and accuracy."""
        assert self.params is not None
        trace = self.graph.forward(x, self.params, training=True, rng=self._dropout_rng)
        logits = trace.activations[self._logits]
        loss, dlogits = softmax_cross_entropy(logits, y)
        grads = self.graph.backward(trace, {self._logits: dlogits.astype(logits.dtype, copy=False)}, input_grad=False)
        self.optimizer.step(self.params, grads.params)
        return loss, float((logits.argmax(axis=1) == y).mean())

    def run(self) -> Iterator[Progress]:
        """Train for ``config.epochs`` epochs, yielding progress events; stops early after ``cancel()``."""
        cfg = self.config
        x_all, y_all = self.train
        n = len(x_all)
        batches = math.ceil(n / cfg.batch_size)
        total = batches * cfg.epochs
        start = time.perf_counter()
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            order = self._shuffle_rng.permutation(n)
            loss_sum = correct = seen = 0.0
            for batch in range(1, batches + 1):
                if self._cancel.is_set():
                    yield self._event("cancelled", epoch, batch - 1, batches, step, loss_sum, correct, seen, start,
                                      total)
                    return
                idx = order[(batch - 1) * cfg.batch_size: batch * cfg.batch_size]
                x = random_shift(x_all[idx], cfg.augment_shift, self._augment_rng) if cfg.augment_shift else x_all[idx]
                self.optimizer.lr = self.lr_at(step, total)
                loss, acc = self.train_step(x, y_all[idx])
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss} at epoch {epoch}, batch {batch}: "
                                             "the learning rate is probably too high; try a smaller one")
                step += 1
                loss_sum += loss * len(idx)
                correct += acc * len(idx)
                seen += len(idx)
                if batch % cfg.progress_every == 0 or batch == batches:
                    yield self._event("batch", epoch, batch, batches, step, loss_sum, correct, seen, start, total)
            event = self._event("epoch", epoch, batches, batches, step, loss_sum, correct, seen, start, total)
            if self.test is not None and (cfg.eval_each_epoch or epoch == cfg.epochs):
                event.test_loss, event.test_accuracy = evaluate(self.graph, self.params, *self.test)
                event.elapsed = time.perf_counter() - start
            self.history.append(event)
            yield event
        done = Progress(**{**self.history[-1].as_dict(), "kind": "done", "eta": 0.0,
                           "elapsed": time.perf_counter() - start})
        yield done

    def fit(self) -> dict[str, np.ndarray]:
        """Run to the end without watching; return the trained parameters."""
        for _ in self.run():
            pass
        assert self.params is not None
        return self.params

    def _event(self, kind: Literal["batch", "epoch", "done", "cancelled"], epoch: int, batch: int, batches: int,
               step: int, loss_sum: float, correct: float, seen: float, start: float, total: int) -> Progress:
        elapsed = time.perf_counter() - start
        eta = elapsed / step * (total - step) if step else None  # evaluation time is amortised in
        return Progress(kind=kind, epoch=epoch, epochs=self.config.epochs, batch=batch, batches=batches, step=step,
                        loss=loss_sum / seen if seen else None, accuracy=correct / seen if seen else None,
                        lr=self.optimizer.lr, elapsed=elapsed, eta=eta)


def train(graph: Graph, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None = None,
          config: TrainConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
          on_progress: Any = None) -> tuple[dict[str, np.ndarray], list[Progress]]:
    """Train to the end; ``on_progress(event)`` sees every event. Returns the parameters and the per-epoch history."""
    trainer = Trainer(graph, train, test, config or TrainConfig(), dict(params) if params is not None else None)
    for event in trainer.run():
        if on_progress is not None:
            on_progress(event)
    assert trainer.params is not None
    return trainer.params, trainer.history
