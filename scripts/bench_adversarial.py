"""Benchmark: how easily the shipped digit models are fooled, and how fast the engine fools them.

    .venv/bin/python scripts/bench_adversarial.py [--sizes 100 1000] [--models ...] [--steps 10] [--threads 1]

For each digit model, on the first N correctly classified held-out digits (``engine.datasets.mnist``'s test split,
N in ``--sizes``): the accuracy against ε of FGSM and of PGD (``--steps`` steps of 2.5·ε/steps, from δ = 0), in
pixels in [0, 1]; the flip rate at ε = 0.2 against the issue's goal (FGSM flips at least 80% of 100 correctly
classified digits); and the time taken. Where PyTorch is installed, the same FGSM runs in PyTorch on the same
digits and the same weights (its own autograd through the normalisation), side by side: the two accuracies
should agree to a digit or two (pixels whose gradient is within rounding of zero may take the other sign).

Each side runs in a child process with glibc's malloc told to keep large buffers (as ``bench_engine.py``) and
``--threads`` threads; times are wall-clock seconds on this machine. A benchmark prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPSILONS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
GOAL_EPSILON, GOAL_FLIPS = 0.2, 0.8
DIGIT_MODELS = ["digits_classic", "digits_resnet", "digits_lstm", "digits_gru_attention"]
TORCH_MODELS = {"digits_classic", "digits_resnet"}  # the ops the PyTorch side re-implements


def held_out_pixels() -> tuple[np.ndarray, np.ndarray]:
    from engine.datasets.mnist import load_mnist
    return load_mnist("test", normalize=False)


def engine_worker(folder: Path, model_id: str, sizes: list[int], steps: int) -> dict:
    """The engine's curves for one model; saves the digits it used (``<model>_<n>.npy``) for the PyTorch side."""
    from engine.learned.adversarial import PixelSpace, correctly_classified, robustness_curve
    from engine.models.registry import load_model

    bundle = load_model(model_id)
    space = PixelSpace(bundle.preprocessing.mean, bundle.preprocessing.std)
    pixels, labels = held_out_pixels()
    result: dict = {"model": model_id, "sizes": {}}
    for n in sizes:
        index = correctly_classified(bundle.graph, bundle.params, space.to_input(pixels), labels, n)
        np.save(folder / f"{model_id}_{n}.npy", index)
        row = {}
        for method in ("fgsm", "pgd"):
            start = time.perf_counter()
            curve = robustness_curve(bundle.graph, bundle.params, space, pixels[index], labels[index], EPSILONS,
                                     method=method, steps=steps)
            row[method] = {"accuracy": curve.accuracy.tolist(), "seconds": time.perf_counter() - start}
        result["sizes"][str(n)] = row
    return result


def torch_worker(folder: Path, model_id: str, sizes: list[int]) -> dict:
    """FGSM in PyTorch on the digits the engine used, with the engine's weights (the maths is torch's)."""
    import torch
    import torch.nn.functional as F  # noqa: N812  (PyTorch's own convention)

    from engine.models.registry import load_model

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    bundle = load_model(model_id)
    graph = bundle.graph
    weights = {k: torch.tensor(v) for k, v in bundle.params.items()}
    mean, std = bundle.preprocessing.mean[0], bundle.preprocessing.std[0]

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        acts = {"input": x}
        for node in graph.nodes:
            a, ins = node.op.attrs, [acts[i] for i in node.inputs]
            p = {name: weights[f"{node.id}.{name}"] for name in node.op.param_shapes()}
            op = node.op.op
            if op == "conv2d":
                out = F.conv2d(ins[0], p["weight"], p.get("bias"), stride=a["stride"], padding=a["padding"])
            elif op == "batch_norm":
                out = F.batch_norm(ins[0], p["running_mean"], p["running_var"], p["weight"], p["bias"],
                                   training=False, eps=a["eps"])
            elif op == "relu":
                out = F.relu(ins[0])
            elif op == "max_pool2d":
                out = F.max_pool2d(ins[0], a["kernel_size"], a["stride"])
            elif op == "add":
                out = ins[0] + ins[1]
            elif op == "flatten":
                out = ins[0].flatten(1)
            elif op == "linear":
                out = F.linear(ins[0], p["weight"], p["bias"])
            elif op == "spatial_softmax":
                out = torch.softmax(ins[0].flatten(2), dim=2).reshape(ins[0].shape)
            elif op == "attention_pool":
                out = (ins[0] * ins[1]).sum(dim=(2, 3))
            else:
                raise SystemExit(f"no PyTorch reference for op {op}")
            acts[node.id] = out
        return acts[graph.output_id]

    pixels, labels = held_out_pixels()
    result: dict = {"model": model_id, "sizes": {}}
    for n in sizes:
        index = np.load(folder / f"{model_id}_{n}.npy")
        p, y = torch.tensor(pixels[index]), torch.tensor(labels[index])
        start = time.perf_counter()
        accuracy = []
        for epsilon in EPSILONS:
            right = 0
            for i in range(0, n, 100):  # the engine's batch size
                batch = p[i:i + 100].clone().requires_grad_(True)
                loss = F.cross_entropy(logits_of((batch - mean) / std), y[i:i + 100], reduction="sum")
                (gradient,) = torch.autograd.grad(loss, batch)
                with torch.no_grad():
                    adversarial = (batch + epsilon * gradient.sign()).clamp(0, 1)
                    right += int((logits_of((adversarial - mean) / std).argmax(1) == y[i:i + 100]).sum())
            accuracy.append(right / n)
        result["sizes"][str(n)] = {"fgsm": {"accuracy": accuracy, "seconds": time.perf_counter() - start}}
    return result


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MALLOC_MMAP_THRESHOLD_": "268435456", "MALLOC_TRIM_THRESHOLD_": "536870912",
                "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads), "BENCH_THREADS": str(threads)})
    return env


def run_child(args: list[str], threads: int) -> dict:
    command = [sys.executable, __file__, *args]
    result = subprocess.run(command, env=child_env(threads), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def curve_line(name: str, accuracy: list[float]) -> str:
    return f"    {name:<14}" + "".join(f"{a:>7.1%}" for a in accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000],
                        help="numbers of correctly classified held-out digits (default 100 1000)")
    parser.add_argument("--models", nargs="+", choices=DIGIT_MODELS, default=DIGIT_MODELS)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides (default 1)")
    parser.add_argument("--engine-only", action="store_true", help="without the PyTorch side")
    parser.add_argument("--worker", nargs=3, metavar=("SIDE", "FOLDER", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, folder, model_id = args.worker
        if side == "engine":
            print(json.dumps(engine_worker(Path(folder), model_id, args.sizes, args.steps)))
        else:
            print(json.dumps(torch_worker(Path(folder), model_id, args.sizes)))
        return

    sizes = [str(n) for n in args.sizes]
    use_torch = not args.engine_only and has_torch()
    print(f"accuracy against ε (pixels in [0, 1]) on N correctly classified held-out digits; PGD: {args.steps} "
          f"steps of 2.5·ε/{args.steps}; {args.threads} thread(s)")
    print(f"    {'ε':<14}" + "".join(f"{e:>7.2f}" for e in EPSILONS))
    goal_index = EPSILONS.index(GOAL_EPSILON)
    with tempfile.TemporaryDirectory(prefix="bench-adversarial-") as folder:
        for model_id in args.models:
            size_args = ["--sizes", *sizes, "--steps", str(args.steps)]
            engine = run_child([*size_args, "--worker", "engine", folder, model_id], args.threads)
            theirs = None
            if use_torch and model_id in TORCH_MODELS:
                theirs = run_child([*size_args, "--worker", "torch", folder, model_id], args.threads)
            for n in sizes:
                row = engine["sizes"][n]
                print(f"{model_id}, N = {n}")
                for method in ("fgsm", "pgd"):
                    print(curve_line(f"{method} (engine)", row[method]["accuracy"]) +
                          f"   {row[method]['seconds']:.2f} s")
                if theirs is not None:
                    torch_row = theirs["sizes"][n]["fgsm"]
                    print(curve_line("fgsm (torch)", torch_row["accuracy"]) + f"   {torch_row['seconds']:.2f} s")
                flips = 1 - row["fgsm"]["accuracy"][goal_index]
                verdict = "met" if flips >= GOAL_FLIPS else "NOT met"
                print(f"    FGSM at ε = {GOAL_EPSILON} flips {flips:.0%} (goal {GOAL_FLIPS:.0%}: {verdict}); PGD "
                      f"flips {1 - row['pgd']['accuracy'][goal_index]:.0%}")


if __name__ == "__main__":
    main()
