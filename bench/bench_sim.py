"""Simulator cost, measured side by side in one run:

1. mtsnn's simulator (every event counted and priced, the chip's free-running schedule) against
   onnxruntime's plain integer inference of the same network on the same images, interleaved
   rounds, per 1,000 images (goal: <= 2x); plus the detailed network model's cost per sample
   (mtsnn-sim runs it on 16 samples by default) and the mapper's time (goal: < 1 s);
2. mtsnn against SANA-FE per sample on a binary version of the network (Smax = 1, no leak: what
   SANA-FE can express), checking that the counts are identical (goal: mtsnn >= 100x faster);
3. the peak memory of simulating 10,000 images, in a child process (goal: < 2 GB).

    python bench/bench_sim.py [--model model.pt] [--binary-model binary.pt] [--dataset mnist:DIR]
                              [--target loihi] [--images 1000] [--rounds 3] [--sanafe-samples 10]
                              [--memory-images 10000] [--threads 2] [--json OUT]

Without --model it uses the paper's MNIST CNN (15C5-P2-40C5-P2-300, T=2, Smax=15, 8-bit) with
initial weights; pass a trained checkpoint for realistic activity (the simulator's work grows
with the number of spikes, onnxruntime's does not). Without --binary-model the SANA-FE part
uses the same architecture with random integer weights at Smax = 1.
"""

from __future__ import annotations

import argparse
import json
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


def _binary_network(path: str | None, input_shape: tuple):
    """A binary (Smax 1, no leak) network with the paper's architecture: trained, or random."""
    from mtsnn.export.integer import to_integer_network
    from mtsnn.hw_model.synthetic import random_network

    if path:
        return to_integer_network(_load_model(path))
    layers = (("conv", 15, 5, 0), ("pool", 2), ("conv", 40, 5, 0), ("pool", 2), ("dense", 300))
    return random_network(np.random.default_rng(0), input_shape, layers, 10, smax=1, delta=0, timesteps=2)


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
# the peak of this process's own memory map (VmHWM): ru_maxrss would carry over the parent's
# peak across fork + exec and report the benchmark's own memory instead of the child's
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024  # both in KiB on Linux


def _versus_onnxruntime(model, net, images, target: str, rounds: int, threads: int) -> dict:
    import onnxruntime as ort

    from mtsnn.export.onnx_model import build_onnx
    from mtsnn.hw_model.mapper import map_network
    from mtsnn.hw_model.noc import detailed_tick_cycles
    from mtsnn.hw_model.reference import run_reference
    from mtsnn.hw_model.schedule import schedule_for
    from mtsnn.hw_model.simulator import simulate
    from mtsnn.hw_model.target import load_target

    chip = load_target(target)
    started = time.perf_counter()
    mapping = map_network(net, chip)
    mapper_s = time.perf_counter() - started
    sched = schedule_for(net, chip)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(build_onnx(net).SerializeToString(), options, providers=["CPUExecutionProvider"])

    def onnxruntime():
        return np.concatenate([session.run(None, {"images": images[i : i + 64]})[0] for i in range(0, len(images), 64)])

    def simulator():
        return simulate(mapping, images).logits

    def reference():  # the numpy integer reference: T steps, no schedule, nothing counted
        return run_reference(net, images).logits

    agree = np.array_equal(onnxruntime(), simulator()) and np.array_equal(onnxruntime(), reference())
    times = {"onnxruntime": [], "reference": [], "simulator": []}
    for _ in range(rounds):
        for name, fn in (("onnxruntime", onnxruntime), ("reference", reference), ("simulator", simulator)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    per_1000 = {name: statistics.median(t) * 1000 / len(images) for name, t in times.items()}
    started = time.perf_counter()
    detailed_tick_cycles(mapping, images[:16])
    detailed_per_sample = (time.perf_counter() - started) / 16
    return {"arch": model.config.arch, "target": target, "cores": mapping.n_cores, "images": len(images),
            "mapper_s": mapper_s, "seconds_per_1000": per_1000, "logits_agree": bool(agree),
            "ratio_simulator_vs_onnxruntime": per_1000["simulator"] / per_1000["onnxruntime"],
            "ratio_reference_vs_onnxruntime": per_1000["reference"] / per_1000["onnxruntime"],
            "schedule": {"ticks": sched.n_ticks, "timesteps": net.timesteps, "subticks": sched.subticks},
            "detailed_network_model_s_per_sample": detailed_per_sample}


def _versus_sanafe(binary, images, samples: int, threads: int) -> dict:
    from mtsnn.crosscheck import sanafe_crosscheck
    from mtsnn.hw_model.mapper import map_network
    from mtsnn.hw_model.simulator import simulate
    from mtsnn.hw_model.target import load_target

    mapping = map_network(binary, load_target("loihi"))
    check = sanafe_crosscheck(mapping, images[:samples])
    simulate(mapping, images[:64])  # warm-up
    started = time.perf_counter()
    simulate(mapping, images)
    ours = (time.perf_counter() - started) / len(images)
    theirs = check.seconds["sanafe_run"] / samples
    return {"cores": mapping.n_cores, "samples_sanafe": samples, "counts_identical": check.counts_identical,
            "dynamic_energy_ratio": check.dynamic_ratio,
            "latency_ratio_min": float(check.latency_ratios.min()), "latency_ratio_max": float(check.latency_ratios.max()),
            "contention_free_latency_ratio_min": float(check.fast_latency_ratios.min()),
            "contention_free_latency_ratio_max": float(check.fast_latency_ratios.max()),
            "mtsnn_s_per_sample": ours, "mtsnn_images": len(images), "sanafe_s_per_sample": theirs,
            "sanafe_build_s": check.seconds["sanafe_build"], "speedup": theirs / ours}


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--binary-model", default=None, help="a trained Smax = 1, tau 0 checkpoint for the SANA-FE part")
    parser.add_argument("--target", default="loihi")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--dataset", default=None, help="test images from this data set, e.g. mnist:DIR (default: "
                        "digits for 8x8 models, else random images)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sanafe-samples", type=int, default=10, help="0 skips the SANA-FE comparison")
    parser.add_argument("--memory-images", type=int, default=10000, help="0 skips the memory measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, net = _network(args.model)
    images = _images(model, args.images, args.dataset)
    result = _versus_onnxruntime(model, net, images, args.target, args.rounds, args.threads)
    per = result["seconds_per_1000"]
    print(f"{result['arch']} on {args.target}: {result['cores']} cores (mapped in {result['mapper_s']:.3f} s; goal < 1 s), "
          f"{args.images} images, {args.threads} threads, {args.rounds} interleaved rounds; logits agree: "
          f"{result['logits_agree']}")
    print(f"{'path':<14}{'s / 1000 images':>16}")
    for name, seconds in per.items():
        print(f"{name:<14}{seconds:>16.3f}")
    print(f"simulator / onnxruntime = {result['ratio_simulator_vs_onnxruntime']:.2f}x  (goal: <= 2x); "
          f"numpy reference / onnxruntime = {result['ratio_reference_vs_onnxruntime']:.2f}x")
    sched = result["schedule"]
    print(f"  the simulator runs the chip's schedule: {sched['ticks']} ticks of {sched['subticks']} sub-ticks per "
          f"sample (the reference and onnxruntime: {sched['timesteps']} steps), every event counted per core")
    print(f"detailed network model: {result['detailed_network_model_s_per_sample'] * 1e3:.1f} ms per sample "
          "(mtsnn-sim runs it on 16 samples by default: --detailed-samples)")
    if args.sanafe_samples:
        binary = _binary_network(args.binary_model, tuple(model.config.input_shape))
        sanafe = _versus_sanafe(binary, images, args.sanafe_samples, args.threads)
        result["sanafe"] = sanafe
        print(f"binary network (Smax 1) vs SANA-FE on {sanafe['samples_sanafe']} samples: counts identical "
              f"{sanafe['counts_identical']}, dynamic energy ratio {sanafe['dynamic_energy_ratio']:.4f}, per-tick latency "
              f"ratio {sanafe['latency_ratio_min']:.3f}..{sanafe['latency_ratio_max']:.3f} (contention-free model "
              f"{sanafe['contention_free_latency_ratio_min']:.3f}..{sanafe['contention_free_latency_ratio_max']:.3f})")
        print(f"per sample: mtsnn {sanafe['mtsnn_s_per_sample'] * 1e3:.3f} ms ({sanafe['mtsnn_images']} images), "
              f"SANA-FE {sanafe['sanafe_s_per_sample'] * 1e3:.1f} ms (+ {sanafe['sanafe_build_s']:.1f} s to build); "
              f"mtsnn is {sanafe['speedup']:.0f}x faster  (goal: >= 100x)")
    if args.memory_images:
        base = _memory_child(args.model, args.target, args.memory_images, False, args.dataset)
        peak = _memory_child(args.model, args.target, args.memory_images, True, args.dataset)
        print(f"peak RSS simulating {args.memory_images} images: {peak / 2**20:.0f} MiB "
              f"(setup alone: {base / 2**20:.0f} MiB; goal: < 2048 MiB)")
        result.update(memory_images=args.memory_images, peak_rss_bytes=peak, setup_rss_bytes=base)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["logits_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
