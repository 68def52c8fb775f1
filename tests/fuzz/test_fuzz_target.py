"""Target files against broken and hostile input (hw_model/target.py ``load_target``).

Seeded text mutations of the presets hw_model/targets/loihi.toml and truenorth.toml: numbers
replaced by huge, tiny, negative, NaN, inf, strings, booleans, arrays; keys deleted, duplicated
and renamed; sections dropped, duplicated and renamed; raw bytes flipped or cut. Every file
must load or be a clean one-line ``TargetError``. A loaded target must then map and simulate
two small random networks (``map_network``, ``simulate``, the detailed network model and the
report) without a crash: finite, non-negative latency and energy, no negative (overflowed)
integer count, or a clean refusal (``DesignRuleError`` / ``InputError``).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fuzz_harness import Inconsistent, fuzz_cases, fuzz_seed
from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.simulator import simulate
from mtsnn.hw_model.synthetic import random_images, random_network
from mtsnn.hw_model.target import PRESET_DIR, load_target

PRESETS = {name: (PRESET_DIR / f"{name}.toml").read_text(encoding="utf-8") for name in ("loihi", "truenorth")}
# TrueNorth's axon types refuse random weights: a relaxed copy lets the fuzz reach its simulator too
PRESETS["truenorth-relaxed"] = re.sub(r'(?m)^axon_types_rule = "enforce"', 'axon_types_rule = "relax"',
                                      PRESETS["truenorth"])
NUMBER = re.compile(r"(?<![\w.\"-])-?(?:\d[\d_]*\.?\d*(?:[eE][+-]?\d+)?|inf|nan)(?![\w.\"])")
KEY_LINE = re.compile(r"^([A-Za-z_\"][^=\n]*?)\s*=", re.M)
SECTION = re.compile(r"^\[([^\]\n]+)\]\s*$", re.M)
REPLACEMENTS = ["1e308", "1.7976931348623157e308", "9223372036854775807", "-9223372036854775808",
                "99999999999999999999", "5e-324", "1e-320", "0", "0.0", "-0.0", "-1", "-1e-9", "nan", "inf", "-inf",
                "+inf", "1", "2", "3", "7", "64", "65", "1024", "4096", "16777216", "16777217", "65536", "1e-12",
                "1e-15", "1e-16", "1e-3", "10.0", "0x10", "0o7", "1_000", '"1"', '""', "true", "false", "[]", "[1]",
                "{}", "[1, 2, 3]", "1979-05-27", '"\\u001b[2J"', '"' + "x" * 200 + '"']


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _replace_number(rng, text: str) -> str:
    matches = list(NUMBER.finditer(text.split("[sources]")[0]))
    if not matches:
        return text
    m = _pick(rng, matches)
    return text[: m.start()] + _pick(rng, REPLACEMENTS) + text[m.end():]


def _scale_number(rng, text: str) -> str:
    """A plausible-looking but wrong magnitude: x 1e3, x 1e-3, x 1e6, negated, +1, -1."""
    matches = list(NUMBER.finditer(text.split("[sources]")[0]))
    if not matches:
        return text
    m = _pick(rng, matches)
    try:
        value = float(m.group().replace("_", ""))
    except ValueError:
        return text
    new = _pick(rng, [value * 1e3, value * 1e-3, value * 1e6, -value, value + 1, value - 1, value * 2, value / 2])
    is_int = re.fullmatch(r"-?\d[\d_]*", m.group()) is not None
    replacement = str(int(new)) if is_int and math.isfinite(new) and new == int(new) else repr(float(new))
    return text[: m.start()] + replacement + text[m.end():]


def _key_line(rng, text: str):
    lines = [m for m in KEY_LINE.finditer(text)]
    return _pick(rng, lines) if lines else None


def _delete_key(rng, text):
    m = _key_line(rng, text)
    if m is None:
        return text
    end = text.find("\n", m.start())
    return text[: m.start()] + text[end + 1 if end >= 0 else len(text):]


def _duplicate_key(rng, text):
    m = _key_line(rng, text)
    if m is None:
        return text
    end = text.find("\n", m.start())
    line = text[m.start(): end if end >= 0 else len(text)]
    return text[:end] + "\n" + line + text[end:]


def _rename_key(rng, text):
    m = _key_line(rng, text)
    if m is None:
        return text
    key = m.group(1)
    new = _pick(rng, [key.upper(), key + "x", key[:-1], "unknown", '"' + key.strip('"') + ' "', "a.b", "\"\\u0000\""])
    return text[: m.start(1)] + new + text[m.end(1):]


def _section_span(rng, text):
    sections = list(SECTION.finditer(text))
    if not sections:
        return None
    index = int(rng.integers(len(sections)))
    start = sections[index].start()
    end = sections[index + 1].start() if index + 1 < len(sections) else len(text)
    return sections[index], start, end


def _drop_section(rng, text):
    span = _section_span(rng, text)
    return text if span is None else text[: span[1]] + text[span[2]:]


def _duplicate_section(rng, text):
    span = _section_span(rng, text)
    return text if span is None else text + "\n" + text[span[1]: span[2]]


def _rename_section(rng, text):
    span = _section_span(rng, text)
    if span is None:
        return text
    m = span[0]
    return text[: m.start(1)] + _pick(rng, [m.group(1).upper(), m.group(1) + "s", "extra", "chip.sub", "core"]) + \
        text[m.end(1):]


def _drop_header(rng, text):
    """The keys of a section land in the one before it."""
    span = _section_span(rng, text)
    return text if span is None else text[: span[0].start()] + text[span[0].end():]


def _swap_values(rng, text):
    """Two keys' values exchanged (strings where numbers belong, lists where scalars do ...)."""
    lines = [m for m in re.finditer(r"^([\w\"]+)\s*=\s*([^#\n]+?)\s*(#.*)?$", text, re.M)]
    if len(lines) < 2:
        return text
    a, b = _pick(rng, lines), _pick(rng, lines)
    if a.start() == b.start():
        return text
    first, second = sorted((a, b), key=lambda m: m.start())
    return (text[: first.start(2)] + second.group(2) + text[first.end(2): second.start(2)] + first.group(2)
            + text[second.end(2):])


def _bytes(rng, text):
    data = bytearray(text.encode("utf-8", "surrogateescape"))
    kind = int(rng.integers(4))
    if kind == 0:
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        data = data[: int(rng.integers(len(data)))]
    elif kind == 2:
        data[int(rng.integers(len(data)))] = 0xFF
    else:
        data += b"\n[chip]\ncores = " + b"9" * 5000 + b"\n"
    return data.decode("utf-8", "surrogateescape")


OPS = [_replace_number] * 6 + [_scale_number] * 4 + [_delete_key, _duplicate_key, _rename_key, _drop_section,
                                                       _duplicate_section, _rename_section, _drop_header,
                                                       _swap_values, _bytes]


@pytest.fixture(scope="module")
def networks():
    rng = np.random.default_rng(5)
    return [random_network(rng, input_shape=(1, 8, 8), layers=(("conv", 4, 3, 1), ("pool", 2), ("dense", 16)),
                           n_classes=4),
            # 2-bit weights: at most 4 distinct weights per neuron, which TrueNorth's axon types allow
            random_network(rng, input_shape=(2, 6, 6), layers=(("conv", 6, 3, 0), ("dense", 12)), n_classes=3,
                           timesteps=3, weight_bits=2, smax=3)]


def _check_simulation(target, network, rng) -> str:
    from mtsnn.hw_model.noc import detailed_tick_cycles
    from mtsnn.hw_model.report import build_report

    mapping = map_network(network, target)  # DesignRuleError (an InputError) is a clean refusal
    images = random_images(rng, 3, network.encoder.shape)
    result = simulate(mapping, images, workers=1)
    for name in ("latency_s", "dynamic_j", "cycles", "synapse_reads"):
        values = np.asarray(result.per_sample[name], dtype=np.float64)
        if not (np.isfinite(values).all() and (values >= 0).all()):
            raise Inconsistent(f"per_sample[{name}] = {values.tolist()}")
    for kind, counts in result.core_counts.items():
        if (np.asarray(counts) < 0).any():
            raise Inconsistent(f"core_counts[{kind}] negative (int64 overflow?)")
    for kind, energy in result.core_energy_j.items():
        if not (np.isfinite(energy).all() and (np.asarray(energy) >= 0).all()):
            raise Inconsistent(f"core_energy_j[{kind}] not finite and >= 0")
    for name in ("core_cycles", "window_cycles", "layer_busy_cycles", "link_load"):
        if (np.asarray(getattr(result, name)) < 0).any():
            raise Inconsistent(f"{name} negative (int64 overflow?)")
    if (result.per_sample["latency_s"] <= 0).any():
        raise Inconsistent("a sample took no time")
    detailed = detailed_tick_cycles(mapping, images[:2])
    if (np.asarray(detailed) < 0).any():
        raise Inconsistent("the detailed network model gave negative tick cycles")
    report = build_report(result, detailed_cycles=detailed)
    total = report["total"]
    for key, value in total.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (math.isfinite(value) and
                                                                                    value >= 0):
            raise Inconsistent(f"report total {key} = {value}")
    return "accepted"


KNOWN_BUGS: dict = {}  # none left (the huge-integer literal: test_a_huge_integer_literal_is_refused)


def test_target_mutation_fuzz(fuzz, networks, tmp_path):
    fuzz.known_bugs.update(KNOWN_BUGS)
    cases = fuzz_cases(260)
    seed = fuzz_seed()
    path = tmp_path / "target.toml"
    for case in range(cases):
        rng = np.random.default_rng([seed, 4, case])
        preset = _pick(rng, sorted(PRESETS))
        text = PRESETS[preset]
        ops = [_pick(rng, OPS) for _ in range(int(rng.integers(1, 4)))]
        for op in ops:
            text = op(rng, text)
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        what = f"case {case} ({preset}: {', '.join(op.__name__ for op in ops)})"
        holder = {}

        def load():
            holder["target"] = load_target(path)

        loaded = fuzz.case(f"{what} / load", load)
        fuzz.bump(f"load_target: {loaded}")
        if loaded != "accepted":
            continue
        fuzz.bump("loaded")
        for index, network in enumerate(networks):
            verdict = fuzz.case(f"{what} / network {index}", lambda: _check_simulation(holder["target"], network, rng))
            fuzz.bump(f"map+simulate: {verdict}")
            if verdict == "clean_errors":
                fuzz.bump("refused_by_the_mapper")
    fuzz.finish()
    assert fuzz.counts["loaded"] > 0 and fuzz.counts["tried"] > cases


def test_presets_load_and_simulate(networks, tmp_path):
    """The unmutated presets accept the networks the fuzz runs (so the fuzz reaches the simulator)."""
    rng = np.random.default_rng(0)
    for name in PRESETS:
        (tmp_path / f"{name}.toml").write_text(PRESETS[name], encoding="utf-8")
        for network in networks:
            if name != "truenorth":  # TrueNorth's axon types refuse these random weights (a design rule)
                assert _check_simulation(load_target(tmp_path / f"{name}.toml"), network, rng) == "accepted"


def test_a_huge_integer_literal_is_refused(tmp_path):
    """Regression: tomllib raises a plain ValueError past Python's 4300-digit limit."""
    from mtsnn.hw_model.target import TargetError

    path = tmp_path / "t.toml"
    path.write_text(PRESETS["loihi"].replace("cores = 128 ", "cores = " + "9" * 5000 + " ", 1), encoding="utf-8")
    with pytest.raises(TargetError):
        load_target(path)
