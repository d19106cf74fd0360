"""Re-train the shipped digit networks from scratch with the engine and print their test accuracy.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/train_digits.py            # every model
    python scripts/train_digits.py digits_classic --out /tmp/weights                      # one, elsewhere
    python scripts/train_digits.py digits_lstm digits_gru_attention                       # the recurrent ones

The CNNs' recipes are in ``engine.models.digits.RECIPES``, the recurrent networks' (digits read row by row)
in ``engine.models.sequence_digits.RECIPES``. Each model is trained with its recipe (optimiser, learning rate,
schedule, epochs, seed) on the 8,000 training digits and evaluated on the 2,000 held-out test digits;
the weights go to ``engine/models/weights/<model id>.npz`` unless ``--out`` says otherwise. The same
seed on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.datasets import load_mnist
from engine.graph import Graph
from engine.models import digits, sequence_digits
from engine.models.digits import WEIGHTS_DIR
from engine.models.weights import save_weights
from engine.training import Trainer, evaluate

RECIPES = {**digits.RECIPES, **sequence_digits.RECIPES}
SPECS = {**digits.SPECS, **sequence_digits.SPECS}


def train_model(model_id: str, out_dir: Path, epochs: int | None = None) -> float:
    """Train ``model_id`` from scratch, save its weights in ``out_dir``; return its test accuracy."""
    config = RECIPES[model_id]
    if epochs is not None:
        config = type(config)(**{**config.__dict__, "epochs": epochs})
    graph = Graph(SPECS[model_id]())
    train, test = load_mnist("train"), load_mnist("test")
    print(f"{model_id}: {graph.param_count():,} parameters; {config}", flush=True)
    trainer = Trainer(graph, train, test, config)
    for event in trainer.run():
        if event.kind == "epoch":
            print(f"  epoch {event.epoch:2d}/{event.epochs}  train loss {event.loss:.4f} acc {event.accuracy:.4f}  "
                  f"test loss {event.test_loss:.4f} acc {event.test_accuracy:.4f}  lr {event.lr:.2e}  "
                  f"{event.elapsed:6.1f}s (eta {event.eta:5.1f}s)", flush=True)
    assert trainer.params is not None
    loss, accuracy = evaluate(graph, trainer.params, *test)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model_id}.npz"
    save_weights(path, trainer.params)
    print(f"{model_id}: test accuracy {accuracy:.2%} (loss {loss:.4f}) on {len(test[1])} held-out digits; "
          f"saved {path} ({path.stat().st_size / 1e3:.0f} kB)", flush=True)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"which models to train: {', '.join(RECIPES)} (default: all)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="where to write <model id>.npz")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in RECIPES]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    start = time.perf_counter()
    results = {model_id: train_model(model_id, args.out, args.epochs) for model_id in (args.models or RECIPES)}
    print("\n".join(f"{k}: {v:.2%}" for k, v in results.items()), f"\n({time.perf_counter() - start:.0f}s in all)")


if __name__ == "__main__":
    main()
