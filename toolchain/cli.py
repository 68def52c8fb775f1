"""Command line: ``mtsnn train|evaluate|export|validate|sim`` and ``mtsnn-train``.

The CLI parses arguments and calls library functions. A user mistake (bad path, malformed
arch string, corrupt file ...) prints one line ``mtsnn <command>: error: ...`` (or
``mtsnn-train: error: ...``) and exits with 2; a
failed validation exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

__all__ = ["main", "train_main", "user_errors", "run_guarded", "DEFAULT_ARCH"]

# Default architecture per data set: the paper's for MNIST-like and CIFAR-10 inputs; for the 8x8
# digits a small CNN whose every fan-in is <= 256 so it also maps onto TrueNorth-like cores.
DEFAULT_ARCH = {
    "digits": "24C3p1-P2-28C3p1-P2-256",
    "mnist": "15C5-P2-40C5-P2-300",
    "fashion-mnist": "15C5-P2-40C5-P2-300",
    "cifar10": "96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024",
}


def user_errors() -> tuple[type, ...]:
    """Exception types that mean 'the user gave bad input' (reported in one line, exit 2)."""
    from mtsnn.hw_model.coredesc import CoreFormatError
    from mtsnn.hw_model.network import NetworkError
    from .arch import ArchError
    from .checkpoint import CheckpointError
    from .datasets import DatasetError
    from .model import ConfigError

    types: list[type] = [CoreFormatError, NetworkError, ArchError, CheckpointError, DatasetError, ConfigError]
    try:
        from mtsnn.hw_model.mapper import DesignRuleError
        from mtsnn.hw_model.target import TargetError

        types += [DesignRuleError, TargetError]
    except ImportError:  # the hardware model is optional for training
        pass
    try:
        from mtsnn.export.errors import ExportError

        types.append(ExportError)
    except ImportError:
        pass
    return tuple(types)


def run_guarded(prog: str, function: Callable[[], int]) -> int:
    """Run ``function``; a user error becomes one line on stderr and exit code 2."""
    try:
        return function()
    except user_errors() as exc:
        message = " ".join(str(exc).split("\n"))
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def default_acc_bits(bits: int) -> int:
    """Accumulator width when not given: 20 bits (TrueNorth's membrane) up to 8-bit weights,
    growing with the weight width so that (Smax + 1) * theta_int stays far from saturation."""
    return max(20, bits + 12)


# ----------------------------------------------------------------------------- train


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="architecture string, e.g. 15C5-P2-40C5-P2-300 (default: per data set, "
                        + ", ".join(f"{k}: {v}" for k, v in DEFAULT_ARCH.items()) + ")")
    parser.add_argument("--dataset", default=None, help="digits (default, embedded), mnist:DIR, fashion-mnist:DIR or cifar10:DIR")
    parser.add_argument("-T", "--timesteps", type=int, default=2, help="time steps (default 2)")
    parser.add_argument("--smax", type=int, default=15, help="largest spike count per step, 1..31 (default 15)")
    parser.add_argument("--bits", type=int, default=8, help="weight bits, 2..16 (default 8)")
    parser.add_argument("--acc-bits", type=int, default=None, help="membrane accumulator bits, 8..32 (default max(20, bits + 12))")
    parser.add_argument("--tau", type=float, default=10.0, help="membrane time constant in steps (default 10: delta = 410); 0 = no leak")
    parser.add_argument("--theta", type=float, default=1.0, help="float threshold (default 1.0; theta_int = theta * 2**f)")
    parser.add_argument("--surrogate", type=int, choices=(1, 2, 3), default=2, help="surrogate curve (default 2)")
    parser.add_argument("--a", type=float, default=1.0, help="surrogate height a (default 1)")
    parser.add_argument("--b", type=float, default=20.0, help="surrogate steepness b (default 20)")
    parser.add_argument("--loss", choices=("ce", "mse"), default="ce", help="cross-entropy on logits (default) or MSE (paper)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 30 on digits, 15 otherwise)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule (default 3e-3)")
    parser.add_argument("--augment", type=int, default=1, help="random translation in pixels during training (default 1; 0 = off)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0): the same seed and --threads give the same model "
                             "(torch's float reductions depend on the thread count)")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="start from this checkpoint's weights (same arch, input and classes), e.g. QAT "
                             "fine-tuning of a float baseline trained with --bits 0")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-o", "--output", default="model.pt", help="checkpoint path (default model.pt)")


def _dataset_kind(spec: str | None) -> str:
    return "digits" if not spec else spec.split(":", 1)[0]


def _init_state(path: str, config) -> dict:
    """The state dict of checkpoint ``path``, checked to fit ``config``'s architecture."""
    from .checkpoint import CheckpointError, load_checkpoint

    model, _ = load_checkpoint(path)
    mine, theirs = config, model.config
    for field in ("arch", "input_shape", "n_classes"):
        if getattr(mine, field) != getattr(theirs, field):
            raise CheckpointError(f"{path}: --init: {field}: expected {getattr(mine, field)!r} (the model being trained), "
                                  f"found {getattr(theirs, field)!r}")
    return model.state_dict()


def run_train(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import save_checkpoint
    from .datasets import load_dataset
    from .model import ModelConfig
    from .neuron import SurrogateConfig
    from .train import TrainSettings, train_model

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    kind = _dataset_kind(args.dataset)
    arch = args.arch or DEFAULT_ARCH.get(kind, DEFAULT_ARCH["mnist"])
    epochs = args.epochs if args.epochs is not None else (30 if kind == "digits" else 15)
    config = ModelConfig(
        arch=arch, input_shape=dataset.input_shape, n_classes=dataset.n_classes, timesteps=args.timesteps,
        smax=args.smax, bits=args.bits, acc_bits=args.acc_bits if args.acc_bits is not None else default_acc_bits(args.bits), tau=args.tau,
        theta=args.theta, surrogate=SurrogateConfig(args.surrogate, args.a, args.b),
    )
    settings = TrainSettings(epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, loss=args.loss,
                             augment=args.augment, progress=not args.no_progress)
    print(f"training {arch} on {dataset.name} ({len(dataset.train.labels)} train / {len(dataset.test.labels)} test), "
          f"T={config.timesteps} Smax={config.smax} bits={config.bits} acc_bits={config.acc_bits} "
          f"surrogate={config.surrogate.curve} for {epochs} epochs", flush=True)
    init_state = _init_state(args.init, config) if args.init else None
    result = train_model(config, dataset, settings, init_state)
    training = {
        "init": str(args.init) if args.init else None,
        "dataset": args.dataset or "digits", "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "loss": args.loss, "augment": args.augment, "test_accuracy": result.test_accuracy,
        "test_samples": int(len(dataset.test.labels)), "seconds": round(result.seconds, 2), "history": result.history,
        "torch_version": str(torch.__version__),
    }
    path = save_checkpoint(args.output, result.model, training)
    print(f"test accuracy (integer-exact forward): {result.test_accuracy:.4f} on {len(dataset.test.labels)} samples "
          f"after {result.seconds:.1f} s of training")
    print(f"saved {path}")
    return 0


# ----------------------------------------------------------------------------- evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint written by mtsnn-train")
    parser.add_argument("--dataset", default=None, help="data set (default: the one the model was trained on)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def load_matching_dataset(spec: str | None, payload: dict, model, prog_path):
    """The data set named by ``spec`` (default: the training one), checked against the model."""
    from .datasets import DatasetError, load_dataset

    spec = spec or payload["training"].get("dataset")
    dataset = load_dataset(None if spec in (None, "digits") else spec)
    if tuple(dataset.input_shape) != tuple(model.config.input_shape) or dataset.n_classes != model.config.n_classes:
        raise DatasetError(
            f"{prog_path}: the model expects inputs {tuple(model.config.input_shape)} and {model.config.n_classes} classes, "
            f"but dataset {spec or 'digits'} has {tuple(dataset.input_shape)} and {dataset.n_classes}"
        )
    return spec or "digits", dataset


def run_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .train import evaluate_model

    model, payload = load_checkpoint(args.model)
    spec, dataset = load_matching_dataset(args.dataset, payload, model, args.model)
    accuracy = evaluate_model(model, dataset.test.images, dataset.test.labels)
    report = {"model": str(args.model), "dataset": spec, "split": "test", "samples": int(len(dataset.test.labels)),
              "accuracy": accuracy, "arch": model.config.arch, "bits": model.config.bits}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.model}: accuracy {accuracy:.4f} on {report['samples']} test samples of {spec}")
    return 0


# ----------------------------------------------------------------------------- entry points


def _subcommands() -> dict[str, tuple[str, Callable, Callable]]:
    commands = {
        "train": ("train an MT-SNN with quantization-aware training", add_train_arguments, run_train),
        "evaluate": ("test accuracy of a checkpoint (integer-exact forward)", add_evaluate_arguments, run_evaluate),
    }
    try:
        from mtsnn.export.cli import add_export_arguments, add_validate_arguments, run_export, run_validate

        commands["export"] = ("write ONNX + core description (and golden vectors)", add_export_arguments, run_export)
        commands["validate"] = ("prove every integer path agrees bit for bit", add_validate_arguments, run_validate)
    except ImportError:
        pass
    try:
        from mtsnn.hw_model.cli import add_sim_arguments, run_sim

        commands["sim"] = ("simulate a core description on a neuromorphic target", add_sim_arguments, run_sim)
    except ImportError:
        pass
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtsnn", description="Multi-threshold SNN deployment toolchain")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = _subcommands()
    for name, (help_text, add_arguments, _) in commands.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return run_guarded(f"mtsnn {args.command}", lambda: commands[args.command][2](args))


def train_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtsnn-train", description="Train an MT-SNN with quantization-aware training")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    return run_guarded("mtsnn-train", lambda: run_train(args))


if __name__ == "__main__":
    sys.exit(main())
