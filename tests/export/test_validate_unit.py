"""first_divergence / compare_paths on hand-made path runs."""

import numpy as np

from mtsnn.export.lints import LayerLint, lint_warnings
from mtsnn.export.validate import PathRun, compare_paths, first_divergence


def _runs():
    rng = np.random.default_rng(0)
    spikes = {"a": rng.integers(0, 4, (2, 5, 3, 2, 2)).astype(np.uint8), "b": rng.integers(0, 4, (2, 5, 7)).astype(np.uint8)}
    logits = rng.integers(-50, 50, (5, 4))
    ref = PathRun("reference", logits, spikes)
    other = PathRun("onnxruntime", logits.copy(), {k: v.copy() for k, v in spikes.items()})
    return ref, other


def test_identical_paths_have_no_divergence():
    ref, other = _runs()
    report = compare_paths(ref, [other], np.zeros(5, dtype=np.int64), ["a", "b"])
    assert report.bit_exact and report.mismatches == 0 and report.divergences == []


def test_the_earliest_layer_wins_over_a_lower_sample_in_a_later_layer():
    ref, other = _runs()
    other.spikes["b"][0, 0, 0] += 1  # sample 0, later layer
    other.spikes["a"][1, 3, 2, 1, 0] += 2  # sample 3, first layer, step 1
    d = first_divergence(ref, other, ["a", "b"])
    assert (d.layer, d.sample, d.time_step, d.neuron) == ("a", 3, 1, (2, 1, 0))
    assert d.path_value == d.reference_value + 2
    assert "sample 3" in d.sentence() and "layer a" in d.sentence() and "time step 1" in d.sentence()


def test_logit_only_divergence_and_mismatch_count():
    ref, other = _runs()
    other.logits[4, 2] += 1
    other.logits[1, 0] -= 1
    report = compare_paths(ref, [other], np.zeros(5, dtype=np.int64), ["a", "b"])
    assert report.mismatches == 2 and not report.bit_exact
    d = report.divergences[0]
    assert (d.layer, d.sample, d.neuron, d.time_step) == ("logits", 1, (0,), None)
    assert report.to_dict()["first_divergence"]["sample"] == 1


def test_lint_warnings_say_what_to_do():
    lint = LayerLint("conv1", 1000, 50, 0.05, 3, 0, True, 0.01)
    text = "\n".join(lint_warnings([lint]))
    assert "5.00% of neuron-steps clipped at Smax" in text and "3 accumulator saturations" in text
    assert "silent" in text and "threshold rounded" in text
    quiet = LayerLint("conv1", 1000, 0, 0.0, 0, 10, False, 0.0)
    assert lint_warnings([quiet]) == []
