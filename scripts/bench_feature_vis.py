"""Benchmark: feature visualisation by optimisation, its time and how far it raises the channel.

    MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=536870912 \\
        .venv/bin/python scripts/bench_feature_vis.py [--steps 128] [--threads 1] [--torch] [--profile]

Times ``engine.learned.feature_vis.visualise`` (``--steps`` steps, wall-clock seconds on this machine) for:

- EfficientNet-Lite0 at 128 × 128 (the issue's goal: 128 steps in at most 30 s), a few channels from early to late
  (``--effnet-channels node:channel ...``), each compared with the mean over the sample photos (static/samples/*.jpg
  prepared at 128 × 128);
- digit channels of digits_classic and digits_resnet, compared with the mean over the 2,000 held-out digits.

``--torch`` runs the same optimisation loop in PyTorch in a separate process with the same environment (the same
starting spectrum, the same random transforms, Adam, ``torch.fft.irfft2`` and ``F.grid_sample``; the EfficientNet
of ``efficientnet_lite_pytorch`` with the same checkpoint, stopped at the same block by a hook), side by side.
``--profile`` prints where the time of the first EfficientNet run goes (cProfile, by own time). A benchmark prints
figures; it is not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EFFNET_CHANNELS = ["block3.add:5", "block10.add:3", "block15.add:7", "head.relu6:100"]
DIGIT_CHANNELS = ["digits_classic/relu2:8", "digits_classic/fc:3", "digits_resnet/block2_out:3",
                  "digits_resnet/block2_out:0"]
SIZE = 128
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "268435456", "MALLOC_TRIM_THRESHOLD_": "536870912"}


def parse_channel(text: str) -> tuple[str, int]:
    node, _, channel = text.rpartition(":")
    return node, int(channel)


def _photos(preprocessing):
    import numpy as np

    from app.imaging import load_image_file

    files = sorted((ROOT / "static" / "samples").glob("*.jpg"))
    return np.concatenate([preprocessing.normalize(load_image_file(p, preprocessing)) for p in files])


def effnet_setup():
    from app.services.feature_vis import _preprocessing_at
    from engine.learned.feature_vis import graph_at_size
    from engine.models.registry import load_model

    bundle = load_model("efficientnet_lite0")
    graph = graph_at_size(bundle.graph, bundle.params, SIZE, SIZE)
    preprocessing = _preprocessing_at(bundle.preprocessing, SIZE)
    return bundle, graph, preprocessing


def run_engine(args) -> list[dict]:
    import numpy as np

    from engine.datasets.mnist import load_mnist
    from engine.learned.feature_vis import FeatureVisConfig, objective_values, visualise
    from engine.learned.objectives import channel_objective, class_objective
    from engine.models.registry import load_model

    rows = []
    bundle, graph, preprocessing = effnet_setup()
    photos = _photos(preprocessing)
    for position, text in enumerate(args.effnet_channels):
        node, channel = parse_channel(text)
        objective = channel_objective(graph, node, channel)
        config = FeatureVisConfig(steps=args.steps, seed=args.seed)
        started = time.perf_counter()
        if args.profile and position == 0:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            result = profiler.runcall(visualise, graph, bundle.params, objective, preprocessing, config)
            seconds = time.perf_counter() - started
            print(f"profile of {text} ({seconds:.1f} s with the profiler on), by own time:")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(14)
        else:
            result = visualise(graph, bundle.params, objective, preprocessing, config)
            seconds = time.perf_counter() - started
        reference = objective_values(graph, bundle.params, objective, photos)
        rows.append(_row("efficientnet_lite0", text, f"{SIZE}x{SIZE}", seconds, result, reference, "photos"))
        print(_format(rows[-1]), flush=True)

    digits_x, _ = load_mnist("test")
    for text in args.digit_channels:
        model_id, _, rest = text.partition("/")
        node, channel = parse_channel(rest)
        digit_bundle = load_model(model_id)
        g = digit_bundle.graph
        objective = class_objective(g, channel) if node == "fc" else channel_objective(g, node, channel)
        started = time.perf_counter()
        result = visualise(g, digit_bundle.params, objective, digit_bundle.preprocessing,
                           FeatureVisConfig(steps=args.steps, seed=args.seed))
        seconds = time.perf_counter() - started
        reference = objective_values(g, digit_bundle.params, objective, digits_x)
        rows.append(_row(model_id, rest, "28x28", seconds, result, reference, "digits"))
        print(_format(rows[-1]), flush=True)
    del np
    return rows


def _row(model, objective, size, seconds, result, reference, source) -> dict:
    mean, best = float(reference.mean()), float(reference.max())
    return {"model": model, "objective": objective, "size": size, "seconds": seconds, "start": result.start,
            "end": result.end, "reference": source, "mean": mean, "best": best,
            "ratio": result.end / mean if mean > 0 else None, "ratio_to_best": result.end / best if best > 0 else None}


def _format(row: dict) -> str:
    ratio = f"{row['ratio']:6.1f}x" if row["ratio"] is not None else "   n/a "
    best = f"{row['ratio_to_best']:5.1f}x" if row["ratio_to_best"] is not None else "  n/a "
    return (f"{row['model']:<19} {row['objective']:<18} {row['size']:>7} {row['seconds']:7.2f} s   "
            f"start {row['start']:8.3f}  end {row['end']:8.3f}  {row['reference']} mean {row['mean']:7.3f} "
            f"best {row['best']:7.3f}   end/mean {ratio}  end/best {best}")


# --- the same loop in PyTorch (run in its own process) ----------------------------------------------------------

def run_torch(args) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    from engine.learned import image_param as ip
    from engine.learned.feature_vis import FeatureVisConfig, default_learning_rate
    from engine.learned.image_param import ImageParametrisation
    from engine.models import efficientnet_lite as effnet
    from engine.models.digits import PREPROCESSING as DIGITS
    from engine.models.registry import load_model

    torch.set_num_threads(args.threads)

    class StopError(Exception):
        pass

    def optimise(forward, channels, size, preprocessing, channel):
        """Lucid's loop with torch's autograd; the start and the transforms drawn as the engine draws them."""
        config = FeatureVisConfig(steps=args.steps, seed=args.seed)
        rng = np.random.default_rng(config.seed)
        image = ImageParametrisation(channels, size, size, decorrelate_colours=channels == 3)
        spectrum = torch.tensor(image.initial_spectrum(rng), requires_grad=True)
        optimiser = torch.optim.Adam([spectrum], lr=default_learning_rate(size, size), maximize=True)
        scale = torch.tensor(ip.spectrum_scale(size, size))
        colours = torch.tensor(ip.COLOR_MATRIX)
        mean = torch.tensor(preprocessing.mean).reshape(-1, 1, 1)
        std = torch.tensor(preprocessing.std).reshape(-1, 1, 1)
        started = time.perf_counter()
        for _ in range(config.steps):
            sy, sx = config.transforms.sample(rng, size, size)
            grid = torch.tensor(np.stack([(2 * sx + 1) / size - 1, (2 * sy + 1) / size - 1], axis=-1)[None])
            t = torch.fft.irfft2(torch.complex(spectrum[0], spectrum[1]) * scale, s=(size, size)) * ip.FFT_OUTPUT_SCALE
            if channels == 3:
                t = torch.einsum("cd,dhw->chw", colours, t)
            x = (torch.sigmoid(t) - mean) / std
            moved = F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            value = forward(moved.float())[0, channel].mean()
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
        seconds = time.perf_counter() - started
        with torch.no_grad():
            t = torch.fft.irfft2(torch.complex(spectrum[0], spectrum[1]) * scale, s=(size, size)) * ip.FFT_OUTPUT_SCALE
            if channels == 3:
                t = torch.einsum("cd,dhw->chw", colours, t)
            end = float(forward(((torch.sigmoid(t) - mean) / std)[None].float())[0, channel].mean())
        return seconds, end

    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(effnet.checkpoint_path())).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _, _, preprocessing = effnet_setup()
    for text in args.effnet_channels:
        node, channel = parse_channel(text)
        if not node.startswith("block"):
            continue  # the head's relu6 has no hook point of its own in that package
        index = int(node.split(".")[0][len("block"):]) - 1
        captured = {}

        def hook(module, inputs, output, captured=captured):
            captured["out"] = output
            raise StopError

        handle = model._blocks[index].register_forward_hook(hook)

        def forward(x, captured=captured):
            with contextlib.suppress(StopError):
                model(x)
            return captured["out"]

        seconds, end = optimise(forward, 3, SIZE, preprocessing, channel)
        handle.remove()
        print(json.dumps({"model": "efficientnet_lite0", "objective": text, "seconds": seconds, "end": end}),
              flush=True)

    bundle = load_model("digits_classic")
    params = {k: torch.tensor(v) for k, v in bundle.params.items()}

    def classic_relu2(x):
        x = F.max_pool2d(F.relu(F.conv2d(x, params["conv1.weight"], params["conv1.bias"], padding=2)), 2)
        return F.relu(F.conv2d(x, params["conv2.weight"], params["conv2.bias"]))

    seconds, end = optimise(classic_relu2, 1, 28, DIGITS, 8)
    print(json.dumps({"model": "digits_classic", "objective": "relu2:8", "seconds": seconds, "end": end}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="BLAS (and torch) threads")
    parser.add_argument("--effnet-channels", nargs="+", default=EFFNET_CHANNELS, metavar="NODE:CHANNEL")
    parser.add_argument("--digit-channels", nargs="+", default=DIGIT_CHANNELS, metavar="MODEL/NODE:CHANNEL",
                        help="a node 'fc' means the class logit")
    parser.add_argument("--torch", action="store_true", help="also the same loop in PyTorch, in its own process")
    parser.add_argument("--profile", action="store_true", help="profile the first EfficientNet run")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    if args.torch_worker:
        run_torch(args)
        return
    print(f"feature visualisation, {args.steps} steps, {args.threads} BLAS thread(s); the issue's goal: "
          f"EfficientNet-Lite0 at {SIZE}x{SIZE} in <= 30 s")
    run_engine(args)
    if args.torch:
        print("\nthe same loop in PyTorch (own process, same environment):", flush=True)
        command = [sys.executable, __file__, "--torch-worker", "--steps", str(args.steps), "--seed", str(args.seed),
                   "--threads", str(args.threads), "--effnet-channels", *args.effnet_channels]
        lines = subprocess.run(command, env={**os.environ, **MALLOC}, capture_output=True, text=True, check=True)
        for line in lines.stdout.splitlines():
            if not line.startswith("{"):
                continue  # the package's own messages
            row = json.loads(line)
            print(f"torch  {row['model']:<19} {row['objective']:<18} {row['seconds']:7.2f} s   end {row['end']:8.3f}")


if __name__ == "__main__":
    main()
