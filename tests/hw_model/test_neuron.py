"""Golden values for the integer MT-LIF neuron (hw_model.neuron), checkable by hand.

Every expected number has its arithmetic next to it. Each golden case runs on three backends:
numpy int64 (reference, simulator), torch int64 and torch float64 holding integers (training's
exact forward); all three must give the same integers.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mtsnn.hw_model.neuron import (
    DELTA_MAX,
    LEAK_DENOMINATOR,
    accumulator_limit,
    delta_from_tau,
    encode_pixels,
    leak,
    mtlif_step,
    readout_step,
    saturate,
    spike_count,
)

BACKENDS = ["numpy_int64", "torch_int64", "torch_float64"]


def make(values, backend):
    """The same integers as an array of the given backend."""
    if backend == "numpy_int64":
        return np.asarray(values, dtype=np.int64)
    if backend == "torch_int64":
        return torch.tensor(values, dtype=torch.int64)
    if backend == "torch_float64":
        return torch.tensor(values, dtype=torch.float64)
    raise AssertionError(backend)


def ints(result, backend):
    """Back to a list of Python ints, checking the backend kept its array type and dtype."""
    if backend == "numpy_int64":
        assert isinstance(result, np.ndarray) and result.dtype == np.int64
        return [int(v) for v in result.tolist()]
    assert isinstance(result, torch.Tensor)
    expected_dtype = torch.int64 if backend == "torch_int64" else torch.float64
    assert result.dtype == expected_dtype
    values = result.tolist()
    assert all(float(v).is_integer() for v in values), values
    return [int(v) for v in values]


def bools(mask):
    if isinstance(mask, torch.Tensor):
        assert mask.dtype == torch.bool
    else:
        assert mask.dtype == np.bool_
    return [bool(v) for v in mask.tolist()]


# ----------------------------------------------------------------------------------- leak

# delta = 410 (the paper's tau = 10: round(4096 / 10) = round(409.6) = 410), so each step
# V <- trunc(V * 3686 / 4096), 3686 = 4096 - 410.
LEAK_410 = [
    # v, leak(v)
    (-5000, -4499),  # -5000*3686 = -18_430_000; 18_430_000 = 4499*4096 + 2096 -> -4499.51.. -> trunc -4499 (floor: -4500)
    (5000, 4499),  # 18_430_000 / 4096 = 4499.51.. -> 4499
    (-1, 0),  # -3686 / 4096 = -0.90 -> trunc 0 (floor would give -1)
    (1, 0),  # 3686 / 4096 = 0.90 -> 0
    (0, 0),
    (-4096, -3686),  # -4096*3686/4096 = -3686 exactly
    (4097, 3686),  # 4097*3686 = 4096*3686 + 3686 -> 3686.90 -> 3686
    (-4097, -3686),  # symmetric: -3686.90 -> trunc -3686
    (30000, 26997),  # 30000*3686 = 110_580_000 = 26997*4096 + 288 -> 26997
    (2**31 - 1, 1932525567),  # 2147483647*3686 = 7_915_624_722_842 = 1_932_525_567*4096 + 410 -> 1932525567
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_leak_golden_delta_410_rounds_toward_zero(backend):
    v = make([row[0] for row in LEAK_410], backend)
    assert ints(leak(v, 410), backend) == [row[1] for row in LEAK_410]


@pytest.mark.parametrize("backend", BACKENDS)
def test_leak_delta_0_is_a_pure_integrator(backend):
    values = [-(2**31 - 1), -5000, -1, 0, 1, 7, 2**31 - 1]
    assert ints(leak(make(values, backend), 0), backend) == values  # V * 4096 / 4096 = V


@pytest.mark.parametrize("backend", BACKENDS)
def test_leak_delta_4096_forgets(backend):
    values = [-(2**31 - 1), -5000, -1, 0, 1, 7, 2**31 - 1]
    assert ints(leak(make(values, backend), DELTA_MAX), backend) == [0] * len(values)  # V * 0 / 4096 = 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_leak_delta_2048_halves_toward_zero(backend):
    # (4096 - 2048) / 4096 = 1/2: 7 -> 3 (3.5), -7 -> -3 (-3.5 toward zero), 8 -> 4, -1 -> 0 (-0.5)
    assert ints(leak(make([7, -7, 8, -1], backend), 2048), backend) == [3, -3, 4, 0]


# ----------------------------------------------------------------------------------- saturate


def test_accumulator_limit():
    assert accumulator_limit(8) == 127  # 2**7 - 1
    assert accumulator_limit(16) == 32767  # 2**15 - 1
    assert accumulator_limit(32) == 2147483647  # 2**31 - 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_saturate_8_bits_counts_every_clip(backend):
    # A = 8: limit 2**7 - 1 = 127, symmetric (-128 is clipped too)
    u = make([-200, -128, -127, 0, 127, 128, 300], backend)
    clipped, mask = saturate(u, 8)
    assert ints(clipped, backend) == [-127, -127, -127, 0, 127, 127, 127]
    assert bools(mask) == [True, True, False, False, False, True, True]
    assert int(mask.sum()) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_saturate_32_bits(backend):
    # A = 32: limit 2**31 - 1 = 2147483647; 2**31 is one above it
    u = make([2**31, 2**31 - 1, -(2**31 - 1), -(2**31)], backend)
    clipped, mask = saturate(u, 32)
    assert ints(clipped, backend) == [2**31 - 1, 2**31 - 1, -(2**31 - 1), -(2**31 - 1)]
    assert bools(mask) == [True, False, False, True]


# ----------------------------------------------------------------------------------- spike_count


@pytest.mark.parametrize("backend", BACKENDS)
def test_spike_count_golden(backend):
    # theta_int = 100, Smax = 15: min(15, max(0, floor(u / 100)))
    u = [-250, -1, 0, 99, 100, 200, 300, 1500, 1599, 1600, 5000]
    expected = [
        0,  # floor(-2.5) = -3 -> max(0, .) = 0
        0,  # floor(-0.01) = -1 -> 0
        0,  # 0
        0,  # floor(0.99) = 0
        1,  # exactly 1*theta -> 1
        2,  # exactly 2*theta -> 2
        3,  # exactly 3*theta -> 3
        15,  # exactly 15*theta = Smax*theta -> 15
        15,  # floor(15.99) = 15
        15,  # 16*theta = (Smax+1)*theta -> min(15, 16) = 15
        15,  # floor(50) = 50 -> 15
    ]
    assert ints(spike_count(make(u, backend), 100, 15), backend) == expected


# ----------------------------------------------------------------------------------- mtlif_step

# theta_int = 100, delta = 410 (x 3686/4096), Smax = 3, A = 16 (limit 32767)
MTLIF_CASES = [
    # v, i, s, v_next, clipped
    (0, 300, 3, 0, False),  # U = 0 + 300 = 3*theta exactly -> s = 3, residue 300 - 300 = 0
    (0, 200, 2, 0, False),  # U = 200 = 2*theta -> s = 2, residue 0
    (0, 250, 2, 50, False),  # U = 250 -> floor(2.5) = 2 -> V = 250 - 200 = 50
    (0, 1000, 3, 700, False),  # U = 1000 >= (Smax+1)*theta = 400 -> s = Smax = 3, V = 1000 - 300 = 700 carries
    (0, 99, 0, 99, False),  # just below threshold: no spike, V = 99
    (-5000, 0, 0, -4499, False),  # leak(-5000) = -4499 (see LEAK_410), no spike, negative V kept
    (-5000, 4600, 1, 1, False),  # U = -4499 + 4600 = 101 -> s = 1, V = 1
    (30000, 10000, 3, 32467, True),  # U = 26997 + 10000 = 36997 > 32767 -> clipped to 32767 (counted), s = 3, V = 32767 - 300 = 32467
    (-30000, -10000, 0, -32767, True),  # U = -26997 - 10000 = -36997 -> clipped to -32767, s = 0
    (20000, 5767, 3, 23465, False),  # 20000*3686 = 73_720_000 = 17998*4096 + 192 -> 17998; U = 23765 -> s = 3, V = 23465
    (0, 32767, 3, 32467, False),  # U = 32767 = the limit itself: not clipped; s = 3, V = 32767 - 300
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mtlif_step_golden(backend):
    v = make([c[0] for c in MTLIF_CASES], backend)
    i = make([c[1] for c in MTLIF_CASES], backend)
    s, v_next, clipped = mtlif_step(v, i, 100, 410, 3, 16)
    assert ints(s, backend) == [c[2] for c in MTLIF_CASES]
    assert ints(v_next, backend) == [c[3] for c in MTLIF_CASES]
    assert bools(clipped) == [c[4] for c in MTLIF_CASES]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mtlif_step_delta_0_keeps_subthreshold_v(backend):
    # pure integrator: V = 50 with I = 0 stays 50 for ever (theta 100); 123 -> s = 1, V = 23
    s, v_next, _ = mtlif_step(make([50, 123, -77], backend), make([0, 0, 0], backend), 100, 0, 15, 16)
    assert ints(s, backend) == [0, 1, 0]
    assert ints(v_next, backend) == [50, 23, -77]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mtlif_step_delta_4096_forgets_v(backend):
    # leak -> 0 whatever V was, so U = I: V = 99 or -5000 with I = 0 -> 0; V = 99, I = 150 -> s = 1, V = 50
    s, v_next, _ = mtlif_step(make([99, -5000, 99], backend), make([0, 0, 150], backend), 100, 4096, 15, 16)
    assert ints(s, backend) == [0, 0, 1]
    assert ints(v_next, backend) == [0, 0, 50]


def run_trajectory(currents, backend, theta_int=100, delta=410, smax=15, acc_bits=16):
    v = make([0] * len(currents[0]), backend)
    spikes, membranes = [], []
    for current in currents:
        s, v, _ = mtlif_step(v, make(current, backend), theta_int, delta, smax, acc_bits)
        spikes.append(ints(s, backend))
        membranes.append(ints(v, backend))
    return spikes, membranes


@pytest.mark.parametrize("backend", BACKENDS)
def test_mtlif_golden_trajectory_3_steps(backend):
    # theta = 100, delta = 410 (x 3686/4096), Smax = 15; two neurons side by side.
    # neuron 0, constant I = 250:
    #   t1: U = 0 + 250 = 250 -> s = 2, V = 50
    #   t2: leak(50) = 184_300 // 4096 = 44 (44*4096 = 180_224);  U = 44 + 250 = 294 -> s = 2, V = 94
    #   t3: leak(94) = 346_484 // 4096 = 84 (84*4096 = 344_064);  U = 84 + 250 = 334 -> s = 3, V = 34
    # neuron 1, I = 250, -400, 1700:
    #   t1: U = 250 -> s = 2, V = 50
    #   t2: U = 44 - 400 = -356 -> s = 0, V = -356
    #   t3: leak(-356) = -trunc(1_312_216 / 4096) = -320 (320*4096 = 1_310_720);  U = -320 + 1700 = 1380 -> s = 13, V = 80
    spikes, membranes = run_trajectory([[250, 250], [250, -400], [250, 1700]], backend)
    assert spikes == [[2, 2], [2, 0], [3, 13]]
    assert membranes == [[50, 50], [94, -356], [34, 80]]


# ----------------------------------------------------------------------------------- readout_step


@pytest.mark.parametrize("backend", BACKENDS)
def test_readout_step_integrates_without_leak_and_saturates(backend):
    # A = 8 (limit 127): 0+5 = 5; 100+50 = 150 -> 127 (clip); -100-50 = -150 -> -127 (clip);
    # 120-240 = -120; 100+0 = 100 (no leak, no spike, no reset)
    v_next, clipped = readout_step(make([0, 100, -100, 120, 100], backend), make([5, 50, -50, -240, 0], backend), 8)
    assert ints(v_next, backend) == [5, 127, -127, -120, 100]
    assert bools(clipped) == [False, True, True, False, False]


@pytest.mark.parametrize("backend", BACKENDS)
def test_readout_three_steps_sum(backend):
    # logits are the plain sum over T: 7 + (-3) + 11 = 15; 1000 + 1000 + 1000 = 3000 (A = 16, no clip)
    v = make([0, 0], backend)
    for current in ([7, 1000], [-3, 1000], [11, 1000]):
        v, clipped = readout_step(v, make(current, backend), 16)
        assert not bools(clipped)[0] and not bools(clipped)[1]
    assert ints(v, backend) == [15, 3000]


# ----------------------------------------------------------------------------------- encode_pixels

ENCODE_CASES = [
    # smax, pixel, count = (p * smax + 127) // 255
    (15, 0, 0),  # 127 // 255 = 0
    (15, 8, 0),  # (120 + 127) = 247 // 255 = 0
    (15, 9, 1),  # (135 + 127) = 262 // 255 = 1
    (15, 128, 8),  # (1920 + 127) = 2047 // 255 = 8 (8*255 = 2040)
    (15, 254, 15),  # (3810 + 127) = 3937 // 255 = 15 (15*255 = 3825)
    (15, 255, 15),  # (3825 + 127) = 3952 // 255 = 15
    (1, 127, 0),  # (127 + 127) = 254 // 255 = 0: below one half
    (1, 128, 1),  # (128 + 127) = 255 // 255 = 1: 128/255 > 1/2 rounds up
    (31, 4, 0),  # (124 + 127) = 251 // 255 = 0
    (31, 5, 1),  # (155 + 127) = 282 // 255 = 1
    (31, 255, 31),  # (7905 + 127) = 8032 // 255 = 31 (31*255 = 7905)
]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("smax", sorted({c[0] for c in ENCODE_CASES}))
def test_encode_pixels_golden(backend, smax):
    cases = [c for c in ENCODE_CASES if c[0] == smax]
    pixels = [c[1] for c in cases]
    if backend == "numpy":
        out = encode_pixels(np.asarray(pixels, dtype=np.uint8), smax)
        assert out.dtype == np.int64
    else:
        out = encode_pixels(torch.tensor(pixels, dtype=torch.uint8), smax)
        assert out.dtype == torch.int64
    assert [int(v) for v in out.tolist()] == [c[2] for c in cases]


@pytest.mark.parametrize("smax", [1, 7, 15, 31])
def test_encode_pixels_all_256_values_match_formula_and_range(smax):
    pixels = np.arange(256, dtype=np.uint8)
    out = encode_pixels(pixels, smax)
    assert out.tolist() == [(p * smax + 127) // 255 for p in range(256)]  # no uint8 overflow
    assert out[0] == 0 and out[255] == smax and out.min() >= 0 and out.max() <= smax
    assert np.all(np.diff(out) >= 0)  # monotonic
    torch_out = encode_pixels(torch.from_numpy(pixels.copy()), smax)
    assert torch_out.tolist() == out.tolist()


# ----------------------------------------------------------------------------------- delta_from_tau


@pytest.mark.parametrize(
    "tau, delta",
    [
        (10, 410),  # 4096 / 10 = 409.6 -> 410 (the paper's tau)
        (1, 4096),  # 4096 / 1: forget everything each step
        (2, 2048),  # 4096 / 2
        (3, 1365),  # 4096 / 3 = 1365.33 -> 1365
        (4096, 1),  # 4096 / 4096
        (float("inf"), 0),  # no leak: pure integrator
        (0, 0),  # documented alias of inf
    ],
)
def test_delta_from_tau(tau, delta):
    assert delta_from_tau(tau) == delta
    assert isinstance(delta_from_tau(tau), int)


@pytest.mark.parametrize("tau", [0.5, -1, -10.0, float("-inf")])
def test_delta_from_tau_rejects_sub_step_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        delta_from_tau(tau)


def test_delta_410_approximates_one_minus_one_over_tau():
    # (4096 - 410) / 4096 = 0.89990.. vs 1 - 1/10 = 0.9
    assert abs((LEAK_DENOMINATOR - delta_from_tau(10)) / LEAK_DENOMINATOR - 0.9) < 1 / 4096


# ----------------------------------------------------------------------------------- numpy vs torch, bulk


def test_numpy_and_torch_agree_on_random_multi_step_runs():
    """Seeded differential: 5 steps over 4000 neurons with wide inputs (clips, negatives, Smax)."""
    rng = np.random.default_rng(1234)
    theta, delta, smax, acc_bits = 37, 410, 7, 12  # limit 2047: clips happen
    currents = rng.integers(-3000, 3000, size=(5, 4000), dtype=np.int64)
    results = {}
    for backend in BACKENDS:
        v = make(np.zeros(4000, dtype=np.int64), backend)
        trace = []
        for current in currents:
            s, v, clipped = mtlif_step(v, make(current, backend), theta, delta, smax, acc_bits)
            trace.append((ints(s, backend), ints(v, backend), bools(clipped)))
        results[backend] = trace
    assert results["torch_int64"] == results["numpy_int64"]
    assert results["torch_float64"] == results["numpy_int64"]
    assert any(any(step[2]) for step in results["numpy_int64"])  # the run did clip
    assert any(max(step[0]) == smax for step in results["numpy_int64"])  # and did reach Smax


# ----------------------------------------------------------------------------------- no torch in hw_model


def test_hw_model_imports_and_runs_with_torch_blocked():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        import numpy as np
        import mtsnn.hw_model as hw_model
        from mtsnn.hw_model import neuron, network, synapse, reference, coredesc, synthetic
        rng = np.random.default_rng(0)
        net = synthetic.random_network(rng, layers=(("conv", 2, 3, 1), ("pool", 2), ("dense", 4)), n_classes=3)
        result = reference.run_reference(net, synthetic.random_images(rng, 3, (1, 8, 8)))
        assert result.logits.shape == (3, 3)
        s, v, _ = neuron.mtlif_step(np.array([0, 0]), np.array([250, 99]), 100, 410, 15, 16)
        assert s.tolist() == [2, 0] and v.tolist() == [50, 99]
        assert sys.modules["torch"] is None
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
