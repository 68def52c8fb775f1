"""Simulator cost: full event counting + the cycle model vs plain integer inference (onnxruntime).

One command, one run, interleaved rounds on the same images, medians and the ratio; then the
peak memory of simulating 10,000 images (streamed in batches), measured in a child process:

    python bench/bench_sim.py [--model model.pt] [--target loihi] [--images 1000] [--rounds 3]
                              [--memory-images 10000] [--threads 2] [--json OUT]

Without --model it uses the paper's MNIST CNN (15C5-P2-40C5-P2-300, T=2, Smax=15, 8-bit) with
initial weights; pass a trained checkpoint for realistic activity (the simulator's work grows
with the number of spikes, onnxruntime's does not).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import _images, _load_model  # noqa: E402  (same model and images)


def _network(model_path: str | None):
    from mtsnn.export.integer import to_integer_network

    model = _load_model(model_path)
    return model, to_integer_network(model)


def _memory_child(model_path: str | None, target: str, n: int, simulate: bool, dataset: str | None) -> int:
    """Peak RSS (bytes) of a child that loads the model, the images and the mapping, and
    simulates ``n`` images when ``simulate`` (the difference isolates the simulation)."""
    code = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import torch; torch.set_num_threads(1)
from bench_sim import _network, _images
from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.simulator import simulate
from mtsnn.hw_model.target import load_target
model, net = _network({model_path!r})
images = _images(model, {n}, {dataset!r})
mapping = map_network(net, load_target({target!r}))
if {simulate!r}:
    result = simulate(mapping, images)
    assert result.n_samples == {n}
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024  # ru_maxrss is in KiB on Linux


def main(argv=None) -> int:
    import onnxruntime as ort
    import torch

    from mtsnn.export.onnx_model import build_onnx
    from mtsnn.hw_model.mapper import map_network
    from mtsnn.hw_model.simulator import simulate
    from mtsnn.hw_model.target import load_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--target", default="loihi")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--dataset", default=None, help="test images from this data set, e.g. mnist:DIR (default: "
                        "digits for 8x8 models, else random images)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-images", type=int, default=10000, help="0 skips the memory measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, net = _network(args.model)
    images = _images(model, args.images, args.dataset)
    mapping = map_network(net, load_target(args.target))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(build_onnx(net).SerializeToString(), options, providers=["CPUExecutionProvider"])

    def onnxruntime():
        return np.concatenate([session.run(None, {"images": images[i : i + 64]})[0] for i in range(0, len(images), 64)])

    def simulator():
        return simulate(mapping, images).logits

    agree = np.array_equal(onnxruntime(), simulator())  # warm-up, and the logits must agree
    times = {"onnxruntime": [], "simulator": []}
    for _ in range(args.rounds):
        for name, fn in (("onnxruntime", onnxruntime), ("simulator", simulator)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    per_1000 = {name: statistics.median(t) * 1000 / args.images for name, t in times.items()}
    ratio = per_1000["simulator"] / per_1000["onnxruntime"]
    print(f"{model.config.arch} on {args.target}: {mapping.n_cores} cores, {args.images} images, {args.threads} threads, "
          f"{args.rounds} interleaved rounds; logits agree: {agree}")
    print(f"{'path':<14}{'s / 1000 images':>16}")
    for name, seconds in per_1000.items():
        print(f"{name:<14}{seconds:>16.3f}")
    print(f"simulator / onnxruntime = {ratio:.2f}x  (goal: <= 2x)")
    result = {"arch": model.config.arch, "target": args.target, "cores": mapping.n_cores, "images": args.images,
              "seconds_per_1000": per_1000, "ratio_simulator_vs_onnxruntime": ratio, "logits_agree": agree}
    if args.memory_images:
        base = _memory_child(args.model, args.target, args.memory_images, False, args.dataset)
        peak = _memory_child(args.model, args.target, args.memory_images, True, args.dataset)
        print(f"peak RSS simulating {args.memory_images} images: {peak / 2**20:.0f} MiB "
              f"(setup alone: {base / 2**20:.0f} MiB; goal: < 2048 MiB)")
        result.update(memory_images=args.memory_images, peak_rss_bytes=peak, setup_rss_bytes=base)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
