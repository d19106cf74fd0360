"""Training speed of a recurrent network: one epoch of an LSTM reading digits row by row, engine vs PyTorch.

    .venv/bin/python scripts/bench_recurrent.py [--repeat 3] [--batch-size 64] [--hidden 128] [--threads 1]

The network: each digit (1, 28, 28) is read as 28 steps of 28 features (one row per step) by an LSTM with
hidden size 128; its final hidden state goes to a linear layer with 10 outputs. One epoch is the 8,000 training
digits of ``engine.datasets.load_mnist`` in batches of 64 (125 batches): forward, backward and an Adam update
(lr 1e-3), through ``engine.training.Trainer`` on the engine's side and the usual loop on PyTorch's.

Each side runs in its own process with the same environment (``bench_engine.child_env``: OMP, OpenBLAS and MKL
limited to ``--threads``, glibc's malloc told to keep large buffers; PyTorch also gets ``torch.set_num_threads``).
A few warm-up batches run first and are not timed. Each side runs ``--repeat`` epochs and reports its fastest,
in wall-clock and in CPU time (the machine is shared: CPU time is barely moved by other processes' load; the
ratio is given for both). Goal (issue 14): the engine within 2x PyTorch's time. This prints figures; it is not a
test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP_BATCHES = 5
GOAL = 2.0


def lstm_spec(hidden: int) -> dict:
    """reshape (1, 28, 28) -> (28, 28) -> lstm, final hidden state (1, H) -> flatten -> linear 10."""
    return {"input_shape": [1, 28, 28], "nodes": [
        {"id": "rows", "op": "reshape", "shape": [28, 28]},
        {"id": "lstm", "op": "lstm", "hidden_size": hidden, "output": "hidden"},
        {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 10}]}


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def run_engine(batch_size: int, hidden: int, repeat: int) -> dict:
    from engine.datasets import load_mnist
    from engine.graph import Graph
    from engine.training import TrainConfig, Trainer

    x, y = load_mnist("train")
    graph = Graph(lstm_spec(hidden))
    config = TrainConfig(epochs=repeat, batch_size=batch_size, optimizer="adam", lr=1e-3, progress_every=10_000)
    warm = Trainer(graph, (x, y), config=config)
    for i in range(WARMUP_BATCHES):
        warm.train_step(x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size])
    trainer = Trainer(graph, (x, y), config=config)
    walls, cpus, losses = [], [], []
    wall, cpu = _clocks()
    for event in trainer.run():
        if event.kind == "epoch":
            now_wall, now_cpu = _clocks()
            walls.append(now_wall - wall)
            cpus.append(now_cpu - cpu)
            losses.append(event.loss)
            wall, cpu = _clocks()
    return {"wall": walls, "cpu": cpus, "loss": losses[0], "accuracy": trainer.history[0].accuracy}


def run_torch(batch_size: int, hidden: int, threads: int, repeat: int) -> dict:
    import numpy as np
    import torch

    from engine.datasets import load_mnist

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x, y = load_mnist("train")
    rows, labels = torch.from_numpy(x[:, 0]), torch.from_numpy(y)  # (N, 28, 28): 28 steps of 28 features

    class RowLSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(28, hidden, batch_first=True)
            self.fc = torch.nn.Linear(hidden, 10)

        def forward(self, batch):
            _, (h_n, _) = self.lstm(batch)
            return self.fc(h_n[-1])

    model = RowLSTM()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(idx) -> tuple[float, int]:
        optimizer.zero_grad()
        logits = model(rows[idx])
        loss = torch.nn.functional.cross_entropy(logits, labels[idx])
        loss.backward()
        optimizer.step()
        return float(loss), int((logits.argmax(1) == labels[idx]).sum())

    for i in range(WARMUP_BATCHES):
        step(torch.arange(i * batch_size, (i + 1) * batch_size))
    rng = np.random.default_rng(0)
    walls, cpus, losses, accuracies = [], [], [], []
    for _ in range(repeat):
        order = torch.from_numpy(rng.permutation(len(x)))
        wall, cpu = _clocks()
        total = correct = 0.0
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss, right = step(idx)
            total += loss * len(idx)
            correct += right
        now_wall, now_cpu = _clocks()
        walls.append(now_wall - wall)
        cpus.append(now_cpu - cpu)
        losses.append(total / len(x))
        accuracies.append(correct / len(x))
    return {"wall": walls, "cpu": cpus, "loss": losses[0], "accuracy": accuracies[0]}


def measure(side: str, args: argparse.Namespace) -> dict:
    """Run one side in a fresh process with the thread and malloc settings; return its figures."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_engine import child_env  # the same settings as the other benchmarks

    env = child_env(args.threads, keep_openblas_env=False)
    cmd = [sys.executable, __file__, "--side", side, "--batch-size", str(args.batch_size), "--hidden",
           str(args.hidden), "--threads", str(args.threads), "--repeat", str(args.repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(name: str, figures: dict) -> str:
    epochs = ", ".join(f"{w:.2f}" for w in figures["wall"])
    return (f"  {name:8s}{min(figures['wall']):6.2f} s wall, {min(figures['cpu']):6.2f} s CPU  (epochs: {epochs}; "
            f"first epoch's loss {figures['loss']:.3f}, accuracy {figures['accuracy']:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3, help="epochs per side; the fastest is reported")
    parser.add_argument("--side", choices=["engine", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "engine":
        print(json.dumps(run_engine(args.batch_size, args.hidden, args.repeat)))
        return
    if args.side == "torch":
        print(json.dumps(run_torch(args.batch_size, args.hidden, args.threads, args.repeat)))
        return
    print(f"one epoch of an LSTM (hidden {args.hidden}) reading 8,000 digits row by row (28 steps of 28 features), "
          f"batch size {args.batch_size}, Adam, {args.threads} thread(s), fastest of {args.repeat} epochs")
    engine = measure("engine", args)
    print(_line("engine", engine), flush=True)
    try:
        torch = measure("torch", args)
    except subprocess.CalledProcessError as exc:
        print(f"  PyTorch could not run here ({exc.stderr.strip().splitlines()[-1]}); no ratio")
        return
    print(_line("PyTorch", torch))
    wall = min(engine["wall"]) / min(torch["wall"])
    cpu = min(engine["cpu"]) / min(torch["cpu"])
    print(f"  ratio   {wall:.2f}x PyTorch's wall-clock time, {cpu:.2f}x its CPU time (goal: at most {GOAL:g}x)")


if __name__ == "__main__":
    main()
