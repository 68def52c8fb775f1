"""Training-step benchmark: mtsnn's QAT step against a dense ANN floor and peer SNN libraries.

    python bench/bench_training.py [--rounds N] [--warmup W] [--threads 2] [--json OUT]

Every contender trains the same network, the paper's MNIST CNN ``15C5-P2-40C5-P2-300``
(conv 1->15 k5, pool 2, conv 15->40 k5, pool 2, linear 640->300, linear 300->10), input
1x28x28, 10 classes, T = 2 time steps, batch 64, cross-entropy, Adam (lr 1e-3). One "step" is
forward + loss + zero_grad + backward + optimizer step, timed with ``time.perf_counter``.

Contenders:
  mtsnn              the project's QAT model (Brevitas 8-bit fixed-point synapses, exact MT-LIF
                     neurons, Smax = 15, acc_bits = 20), fed the uint8 images, with the fused
                     neuron kernels (toolchain.fused, torch.compile; compile time reported apart)
  mtsnn-unfused      the same model with the unfused (eager) neuron: the state before the fusion
  floor              a plain PyTorch ANN of the same shape (Conv2d/AvgPool2d/Linear + ReLU) run
                     once on the T x B images, CE on the mean of the logits over T: the dense
                     work any of the SNNs must do at least
  snntorch           snnTorch ``Leaky`` neurons, the usual per-time-step Python loop
  spikingjelly-lif   SpikingJelly activation_based, multi-step mode, ``LIFNode`` (torch backend)
  spikingjelly-ilif  the same with ``ILIFNode`` (integer multi-spike, up to 15 spikes per step)
  sinabs             sinabs ``LIFSqueeze`` with the ``MultiSpike`` activation

The SNN peers put a spiking neuron where mtsnn does (after each conv, after each pool, after the
300-unit layer) and read out the mean over T of the last linear layer; their leak is mtsnn's
(1 - 410/4096 per step). Peers that cannot be imported are reported as "not installed": the
script runs in the project venv alone; ``bash bench/setup_peers.sh`` makes bench/.venv-peers
with all of them.

Timing: after ``--warmup`` untimed steps of each contender, ``--rounds`` interleaved rounds; in
each round every contender runs one step, in an order rotated from round to round so no
contender always follows the same one. Reported: the median (and quartiles) ms/step of each,
and the ratios mtsnn / floor and mtsnn / fastest peer (ratios of the medians; the median of the
per-round ratios is shown beside them as a check against drift on a shared machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata

import torch
import torch.nn.functional as F
from torch import nn

ARCH = "15C5-P2-40C5-P2-300"
T = 2
BATCH = 64
N_CLASSES = 10
SMAX = 15
LR = 1e-3
DELTA = 410  # mtsnn's default leak (tau = 10): V <- V * (4096 - 410) / 4096
BETA = 1.0 - DELTA / 4096.0
TAU = 1.0 / (1.0 - BETA)  # SpikingJelly / sinabs time constant with the same per-step decay
GOALS = {"floor": 1.0, "fastest_peer": 0.65}
PEERS = ("snntorch", "spikingjelly-lif", "spikingjelly-ilif", "sinabs")


class NotInstalled(Exception):
    pass


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


DEVICE = torch.device("cpu")  # --device: where every contender runs


def _adam_step(model: nn.Module, forward, target: torch.Tensor):
    model.to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), LR)

    def step() -> float:
        logits = forward()
        loss = F.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


# ---------------------------------------------------------------------------- contenders
def _mtsnn(data, fused: bool):
    from mtsnn.toolchain.model import ModelConfig, MTSNN

    model = MTSNN(ModelConfig(arch=ARCH, input_shape=(1, 28, 28), n_classes=N_CLASSES, timesteps=T,
                              smax=SMAX, bits=8, acc_bits=20))
    model.fused = fused
    images = data["images"]
    return _adam_step(model, lambda: model(images), data["labels"])


def build_mtsnn(data):
    return _mtsnn(data, True), "MT-LIF exact int, fused kernels (torch.compile), Brevitas 8-bit"


def build_mtsnn_unfused(data):
    return _mtsnn(data, False), "MT-LIF exact int, unfused (eager), Brevitas 8-bit"


BASELINE = None  # --baseline PACKAGE: an older copy of mtsnn importable under another name


def build_mtsnn_baseline(data):
    """The same model from an older mtsnn (``--baseline``): the state before a change, in the same run."""
    import importlib

    if BASELINE is None:
        raise NotInstalled("no --baseline package given")
    model_module = importlib.import_module(f"{BASELINE}.toolchain.model")
    model = model_module.MTSNN(model_module.ModelConfig(arch=ARCH, input_shape=(1, 28, 28), n_classes=N_CLASSES,
                                                        timesteps=T, smax=SMAX, bits=8, acc_bits=20))
    images = data["images"]
    return _adam_step(model, lambda: model(images), data["labels"]), f"{BASELINE}: the MT-LIF step of that copy"


def build_floor(data):
    net = nn.Sequential(
        nn.Conv2d(1, 15, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(15, 40, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(640, 300), nn.ReLU(), nn.Linear(300, N_CLASSES),
    )
    x = data["x_seq"].reshape(T * BATCH, 1, 28, 28)
    return _adam_step(net, lambda: net(x).reshape(T, BATCH, N_CLASSES).mean(0), data["labels"]), "ReLU ANN on T*B images"


def build_snntorch(data):
    try:
        import snntorch as snn
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 15, 5), nn.Conv2d(15, 40, 5)
            self.fc1, self.fc2 = nn.Linear(640, 300), nn.Linear(300, N_CLASSES)
            self.lifs = nn.ModuleList(snn.Leaky(beta=BETA, threshold=1.0) for _ in range(5))

        def forward(self, x_seq):
            mems = [lif.init_leaky() for lif in self.lifs]
            outs = []
            for t in range(x_seq.shape[0]):
                s, mems[0] = self.lifs[0](self.conv1(x_seq[t]), mems[0])
                s, mems[1] = self.lifs[1](F.avg_pool2d(s, 2), mems[1])
                s, mems[2] = self.lifs[2](self.conv2(s), mems[2])
                s, mems[3] = self.lifs[3](F.avg_pool2d(s, 2), mems[3])
                s, mems[4] = self.lifs[4](self.fc1(s.flatten(1)), mems[4])
                outs.append(self.fc2(s))
            return torch.stack(outs).mean(0)

    net = Net()
    x_seq = data["x_seq"]
    return _adam_step(net, lambda: net(x_seq), data["labels"]), "Leaky (binary, ATan), per-step loop"


def _spikingjelly_net(node_factory):
    from spikingjelly.activation_based import functional, layer

    net = nn.Sequential(
        layer.Conv2d(1, 15, 5), node_factory(), layer.AvgPool2d(2), node_factory(),
        layer.Conv2d(15, 40, 5), node_factory(), layer.AvgPool2d(2), node_factory(),
        layer.Flatten(), layer.Linear(640, 300), node_factory(), layer.Linear(300, N_CLASSES),
    )
    functional.set_step_mode(net, "m")
    return net


def _spikingjelly_step(net, data):
    from spikingjelly.activation_based import functional

    x_seq = data["x_seq"]

    def forward():
        functional.reset_net(net)
        return net(x_seq).mean(0)

    return _adam_step(net, forward, data["labels"])


def build_spikingjelly_lif(data):
    try:
        from spikingjelly.activation_based import neuron
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    net = _spikingjelly_net(lambda: neuron.LIFNode(tau=TAU, decay_input=False, v_reset=None, detach_reset=True))
    return _spikingjelly_step(net, data), "LIFNode (binary, sigmoid), multi-step"


def build_spikingjelly_ilif(data):
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    if not hasattr(neuron, "ILIFNode"):
        raise NotInstalled("this SpikingJelly has no ILIFNode")
    net = _spikingjelly_net(lambda: neuron.ILIFNode(tau=TAU, surrogate_function=surrogate.MultiLevelSpikeCount(SMAX),
                                                    detach_reset=True))
    return _spikingjelly_step(net, data), f"ILIFNode (integer, <= {SMAX} spikes), multi-step"


def build_sinabs(data):
    try:
        import sinabs
        from sinabs.activation import MultiSpike
        from sinabs.layers import LIFSqueeze
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc

    def node():
        return LIFSqueeze(tau_mem=TAU, spike_fn=MultiSpike, batch_size=BATCH, norm_input=False)

    net = nn.Sequential(
        nn.Conv2d(1, 15, 5), node(), nn.AvgPool2d(2), node(),
        nn.Conv2d(15, 40, 5), node(), nn.AvgPool2d(2), node(),
        nn.Flatten(), nn.Linear(640, 300), node(), nn.Linear(300, N_CLASSES),
    )
    # Squeeze layers take (Batch*Time, ...) with batch-major order.
    x = data["x_seq"].transpose(0, 1).reshape(BATCH * T, 1, 28, 28).contiguous()

    def forward():
        sinabs.reset_states(net)
        return net(x).reshape(BATCH, T, N_CLASSES).mean(1)

    return _adam_step(net, forward, data["labels"]), "LIFSqueeze + MultiSpike"


BUILDERS = {
    "mtsnn": build_mtsnn,
    "mtsnn-unfused": build_mtsnn_unfused,
    "mtsnn-baseline": build_mtsnn_baseline,
    "floor": build_floor,
    "snntorch": build_snntorch,
    "spikingjelly-lif": build_spikingjelly_lif,
    "spikingjelly-ilif": build_spikingjelly_ilif,
    "sinabs": build_sinabs,
}


def make_data(seed: int = 0, device: torch.device = torch.device("cpu")) -> dict:
    data = _make_data(seed)
    return {k: v.to(device) for k, v in data.items()}


def _make_data(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (BATCH, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, N_CLASSES, (BATCH,), generator=g)
    # The peers' input: mtsnn's encoded spike counts scaled to [0, 1], the same at every step.
    counts = (images.to(torch.int64) * SMAX + 127) // 255
    x = (counts.to(torch.float32) / SMAX)
    x_seq = x.unsqueeze(0).expand(T, *x.shape).contiguous()
    return {"images": images, "labels": labels, "x_seq": x_seq}


# ---------------------------------------------------------------------------- run
def _quartiles(xs):
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def run(rounds: int, warmup: int, threads: int, only=None, device: str = "cpu") -> dict:
    global DEVICE
    DEVICE = torch.device(device)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = make_data(device=DEVICE)
    steps, status, neurons = {}, {}, {}
    for name, build in BUILDERS.items():
        if only and name not in only:
            continue
        try:
            steps[name], neurons[name] = build(data)
            status[name] = "ok"
        except NotInstalled as exc:
            status[name] = "not installed"
            print(f"[{name}] not installed ({exc})", file=sys.stderr)
        except Exception as exc:  # a peer whose API changed must not stop the benchmark
            status[name] = f"error: {type(exc).__name__}: {exc}"
            print(f"[{name}] {status[name]}", file=sys.stderr)
    names = list(steps)
    compile_s = {}
    for name in names:  # warm up (and check that the step runs and the loss is finite)
        t0 = time.perf_counter()
        loss = steps[name]()  # the first step: includes torch.compile's work for the fused contender
        first = time.perf_counter() - t0
        for _ in range(warmup - 1):
            loss = steps[name]()
        if not (loss == loss and abs(loss) < float("inf")):
            raise RuntimeError(f"{name}: non-finite loss {loss}")
        compile_s[name] = first
    try:
        from mtsnn.toolchain import fused as _fused

        fused_compile = _fused.compile_seconds()
        fused_status = {"available": _fused.available(), "reason": _fused.unavailable_reason()}
    except ImportError:
        fused_compile, fused_status = None, None
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            _sync()
            t0 = time.perf_counter()
            steps[name]()  # the step returns float(loss): the host waits for the device
            _sync()
            times[name].append((time.perf_counter() - t0) * 1e3)

    results = {}
    for name in BUILDERS:
        if only and name not in only:
            continue
        entry = {"status": status[name]}
        if name in times:
            p25, p75 = _quartiles(times[name])
            entry.update(neuron=neurons[name], median_ms=statistics.median(times[name]), p25_ms=p25, p75_ms=p75,
                         samples_ms=[round(t, 3) for t in times[name]])
        results[name] = entry

    ratios = {}
    for other in ("mtsnn-unfused", "mtsnn-baseline"):
        if other in times and "floor" in times:
            ratios[f"{other}/floor"] = results[other]["median_ms"] / results["floor"]["median_ms"]
    if "mtsnn" in times and "floor" in times:
        ratios["mtsnn/floor"] = results["mtsnn"]["median_ms"] / results["floor"]["median_ms"]
        ratios["mtsnn/floor (median per round)"] = statistics.median(
            a / b for a, b in zip(times["mtsnn"], times["floor"]))
    peers = [p for p in PEERS if p in times]
    fastest = min(peers, key=lambda p: results[p]["median_ms"]) if peers else None
    if "mtsnn" in times and fastest:
        ratios["mtsnn/fastest peer"] = results["mtsnn"]["median_ms"] / results[fastest]["median_ms"]
        for other in ("mtsnn-unfused", "mtsnn-baseline"):
            if other in times:
                ratios[f"{other}/fastest peer"] = results[other]["median_ms"] / results[fastest]["median_ms"]
        ratios["mtsnn/fastest peer (median per round)"] = statistics.median(
            a / b for a, b in zip(times["mtsnn"], times[fastest]))
    goals = {}
    if "mtsnn/floor" in ratios:
        goals["mtsnn/floor <= 1.0"] = ratios["mtsnn/floor"] <= GOALS["floor"]
    if "mtsnn/fastest peer" in ratios:
        goals["mtsnn/fastest peer <= 0.65"] = ratios["mtsnn/fastest peer"] <= GOALS["fastest_peer"]
    versions = {d: _version(d) for d in ("torch", "brevitas", "snntorch", "spikingjelly", "sinabs")}
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "python": sys.executable,
        "machine": {"cpus": os.cpu_count(), "threads": threads, "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "device": str(DEVICE),
                    "device_name": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None},
        "config": {"arch": ARCH, "T": T, "batch": BATCH, "rounds": rounds, "warmup": warmup, "lr": LR},
        "versions": versions,
        "results": results,
        "fastest_peer": fastest,
        "first_step_s": compile_s,
        "mtsnn_compile_s": fused_compile,
        "mtsnn_fused": fused_status,
        "ratios": ratios,
        "goals_met": goals,
    }


def print_table(report: dict) -> None:
    results = report["results"]
    floor = results.get("floor", {}).get("median_ms")
    mt = results.get("mtsnn", {}).get("median_ms")
    print(f"training step, {ARCH}, T={T}, batch {BATCH}, on {report['machine']['device']}, "
          f"{report['machine']['threads']} threads, "
          f"{report['config']['rounds']} interleaved rounds ({report['date']})")
    v = report["versions"]
    print("versions: " + ", ".join(f"{k} {v[k] or '-'}" for k in v))
    header = f"{'contender':<18} {'median ms':>10} {'p25':>8} {'p75':>8} {'x floor':>8} {'mtsnn/x':>8}  neuron"
    print(header)
    print("-" * len(header))
    for name, e in results.items():
        if "median_ms" not in e:
            print(f"{name:<18} {e['status']}")
            continue
        m = e["median_ms"]
        xf = f"{m / floor:8.2f}" if floor else f"{'-':>8}"
        rm = f"{mt / m:8.2f}" if mt else f"{'-':>8}"
        print(f"{name:<18} {m:10.1f} {e['p25_ms']:8.1f} {e['p75_ms']:8.1f} {xf} {rm}  {e['neuron']}")
    print()
    for k, r in report["ratios"].items():
        print(f"{k:<40} {r:6.2f}")
    if report["fastest_peer"]:
        print(f"{'fastest peer':<40} {report['fastest_peer']}")
    for k, ok in report["goals_met"].items():
        print(f"goal {k:<35} {'MET' if ok else 'NOT MET'}")
    if report.get("mtsnn_compile_s") is not None:
        print(f"mtsnn fused kernels: compile time {report['mtsnn_compile_s']:.1f} s (first step "
              f"{report['first_step_s'].get('mtsnn', float('nan')):.1f} s, not in the medians); "
              f"status {report['mtsnn_fused']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30, help="interleaved timed rounds (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per contender first (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--only", nargs="*", choices=list(BUILDERS), help="run only these contenders")
    p.add_argument("--json", metavar="OUT", help="also write the full report (with every sample) here")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: every contender runs there")
    p.add_argument("--baseline", metavar="PACKAGE", help="also time the model of an older mtsnn copy importable as "
                   "PACKAGE (see bench/README.md: git archive REV + a renamed package on --baseline-path)")
    p.add_argument("--baseline-path", metavar="DIR", help="folder added to sys.path for --baseline")
    args = p.parse_args(argv)
    global BASELINE
    BASELINE = args.baseline
    if args.baseline_path:
        sys.path.insert(0, args.baseline_path)
    if args.rounds < 1 or args.warmup < 1:
        p.error("--rounds and --warmup must be >= 1")
    report = run(args.rounds, args.warmup, args.threads, args.only, args.device)
    print_table(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
