"""The schedule a chip runs a network with: free-running, layers pipelined, per-layer reset offsets.

On the chip every core updates every tick, and every neuron adds its bias every tick. A spike
emitted in tick tau is integrated by the next layer in tick tau + 1 (one tick of synaptic delay
per layer). The input generators send the encoded image in ticks 0..T-1, so synaptic layer l
(0-based) sees its T input steps in ticks l+1 .. l+T: its *window*.

Outside its window a layer still runs: before it (the pipeline fill) it integrates its bias
and whatever the layers below emitted in their own fill; after it (the drain) its residual
membranes and bias keep it updating, and possibly firing. The mechanism that keeps the
network's function exact is a **per-layer reset offset** (Lava's ``reset_offset`` for pipelined
inference): layer l sets its membranes to 0 at the start of tick l+1, before that tick's update.
Then, by induction over the layers,

- a layer's fill activity only reaches the next layer during *its* fill (tick < its reset), and
  is wiped by its reset;
- a layer's drain activity only reaches the next layer after *its* window;

so inside every window each layer computes exactly the integer contract (docs/semantics.md),
from a zero membrane, and the readout's membrane at the end of its window (tick L+T-1, the
sample's last) is the logits. A sample takes L + T ticks. The fill and the drain are real work
on the chip and are simulated and priced as such; the reset itself is a write of the membrane
the neuron update already performs (priced as nothing extra: an assumption, docs/hardware_model.md).

**Sub-ticks** (binary-spike chips whose target says ``[spikes] multi_spike = "substeps"``): a
one-bit spike cannot carry a count k > 1, and neither Loihi 1 nor TrueNorth fires a neuron more
than once per tick. Each time step then runs as S = Smax chip ticks (``subticks``): a neuron
with count k fires one spike in each of sub-ticks 0..k-1 of the step, and every core updates
(compartment reads, barrier) in every sub-tick. The tick numbers above count time steps; chip
tick ``t * S + j`` is sub-tick j of step t.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCHEDULE_KIND", "Schedule", "schedule_for", "subticks_for", "sent_in_subtick"]

SCHEDULE_KIND = "pipelined-reset"


@dataclass(frozen=True)
class Schedule:
    """Tick numbers (0-based) of a network of ``n_layers`` synaptic layers and ``timesteps`` T."""

    timesteps: int
    n_layers: int
    subticks: int = 1  # chip ticks per time step (binary chips realising counts > 1 by sub-steps)

    @property
    def n_ticks(self) -> int:
        """Ticks per sample: the input tick(s) plus one tick of delay per layer, then the window."""
        return self.n_layers + self.timesteps

    @property
    def n_chip_ticks(self) -> int:
        """Chip ticks per sample: every tick above runs as ``subticks`` chip ticks."""
        return self.n_ticks * self.subticks

    def chip_ticks(self, tick: int) -> range:
        """The chip ticks of time step ``tick``."""
        return range(tick * self.subticks, (tick + 1) * self.subticks)

    @property
    def input_ticks(self) -> range:
        """Ticks in which the input generators send the encoded image (one step each)."""
        return range(self.timesteps)

    def reset_tick(self, layer_index: int) -> int:
        """Tick at whose start layer ``layer_index``'s membranes are set to 0."""
        return layer_index + 1

    def window(self, layer_index: int) -> range:
        """Ticks in which layer ``layer_index`` runs its T steps of the integer contract."""
        start = self.reset_tick(layer_index)
        return range(start, start + self.timesteps)

    def to_dict(self, layer_names: list[str]) -> dict:
        return {
            "kind": SCHEDULE_KIND,
            "n_ticks": self.n_ticks,
            "subticks": self.subticks,
            "n_chip_ticks": self.n_chip_ticks,
            "input_ticks": [self.input_ticks.start, self.input_ticks.stop],
            "layers": [{"name": name, "reset_tick": self.reset_tick(i),
                        "window": [self.window(i).start, self.window(i).stop]}
                       for i, name in enumerate(layer_names)],
        }


def sent_in_subtick(counts, j: int, subticks: int):
    """What a step's ``counts`` (an integer array) send in sub-tick ``j``: the counts themselves
    when a step is one chip tick, else one spike wherever the count exceeds j."""
    return counts if subticks == 1 else (counts > j).astype(counts.dtype)


def subticks_for(network, target=None) -> int:
    """Chip ticks per time step: the largest spike count the network sends (encoder included)
    on a binary-spike target realising counts by sub-steps, else 1."""
    if target is None or target.encoding != "unary" or target.multi_spike != "substeps":
        return 1
    counts = [network.encoder.smax] + [layer.neuron.smax for layer in network.layers if not layer.readout]
    return max(1, *counts)


def schedule_for(network, target=None) -> Schedule:
    """The schedule of an ``IntegerNetwork`` on ``target`` (None: one chip tick per step)."""
    return Schedule(timesteps=network.timesteps, n_layers=len(network.layers),
                    subticks=subticks_for(network, target))
