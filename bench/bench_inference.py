"""Integer inference speed: onnxruntime and the numpy reference beside PyTorch's eval.

One command, one run, interleaved rounds (each round times every contender once on the same
1,000 images), medians and ratios:

    python bench/bench_inference.py [--model model.pt] [--images 1000] [--rounds 5] [--threads 2]

Without --model it builds the paper's MNIST CNN (15C5-P2-40C5-P2-300, T=2, Smax=15, 8-bit) with
its initial weights (speed does not depend on training for these dense kernels) and uses the
mnist-subset test images when ../shared/data/mnist-subset is present, else random images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _load_model(path: str | None):
    from mtsnn.toolchain.checkpoint import load_checkpoint
    from mtsnn.toolchain.model import MTSNN, ModelConfig

    if path:
        return load_checkpoint(path)[0]
    torch.manual_seed(0)
    model = MTSNN(ModelConfig(arch="15C5-P2-40C5-P2-300", input_shape=(1, 28, 28), n_classes=10, timesteps=2,
                              smax=15, bits=8, acc_bits=20))
    return model.eval()


def _images(model, n: int, dataset: str | None = None) -> np.ndarray:
    """n test images for the model from ``dataset`` (digits for 8x8 models), repeated up to n;
    random images when no data set fits."""
    shape = tuple(model.config.input_shape)
    spec = dataset or ("digits" if shape == (1, 8, 8) else None)
    if spec is None:
        return np.random.default_rng(0).integers(0, 256, (n,) + shape, dtype=np.uint8)
    from mtsnn.toolchain.datasets import load_dataset

    images = load_dataset(spec).test.images
    reps = -(-n // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:n])


def _contenders(model, images: np.ndarray, batch: int):
    import onnxruntime as ort

    from mtsnn.export.integer import to_integer_network
    from mtsnn.export.onnx_model import build_onnx
    from mtsnn.hw_model.reference import run_reference

    net = to_integer_network(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(build_onnx(net).SerializeToString(), options, providers=["CPUExecutionProvider"])
    tensor = torch.tensor(images)

    def pytorch_eval():
        with torch.no_grad():
            return np.concatenate([model(tensor[i : i + batch]).argmax(1).numpy() for i in range(0, len(tensor), batch)])

    def onnxruntime():
        return np.concatenate([session.run(None, {"images": images[i : i + batch]})[0].argmax(1)
                               for i in range(0, len(images), batch)])

    def numpy_reference():
        return run_reference(net, images, batch_size=batch, record_spikes=False).predictions

    return {"pytorch_eval": pytorch_eval, "onnxruntime": onnxruntime, "numpy_reference": numpy_reference}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the paper's MNIST CNN, initial weights)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--dataset", default=None, help="test images from this data set, e.g. mnist:DIR (default: "
                        "digits for 8x8 models, else random images)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = _load_model(args.model)
    images = _images(model, args.images, args.dataset)
    contenders = _contenders(model, images, args.batch)
    predictions = {name: fn() for name, fn in contenders.items()}  # warm-up, and the answers must agree
    agree = all(np.array_equal(predictions["numpy_reference"], p) for p in predictions.values())
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    per_1000 = {name: statistics.median(t) * 1000 / args.images for name, t in times.items()}
    base = per_1000["pytorch_eval"]
    print(f"{model.config.arch}, T={model.config.timesteps}, {args.images} images, batch {args.batch}, "
          f"{args.threads} threads, {args.rounds} interleaved rounds; predictions agree: {agree}")
    print(f"{'contender':<18}{'s / 1000 images':>16}{'vs pytorch_eval':>18}")
    for name, seconds in per_1000.items():
        print(f"{name:<18}{seconds:>16.4f}{seconds / base:>17.2f}x")
    result = {"arch": model.config.arch, "images": args.images, "threads": args.threads, "rounds": args.rounds,
              "seconds_per_1000": per_1000, "ratio_vs_pytorch_eval": {k: v / base for k, v in per_1000.items()},
              "predictions_agree": agree}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
