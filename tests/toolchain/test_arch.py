"""toolchain.arch: the paper's architecture notation, shapes, and one-line errors that point."""

from __future__ import annotations

import re

import pytest

from mtsnn.toolchain.arch import ArchError, ConvSpec, DenseSpec, PoolSpec, format_arch, layer_shapes, parse_arch

LENET = "15C5-P2-40C5-P2-300"
MID = "32C5-P2-64C5-P2-1024"
CIFAR = "96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024"


# --------------------------------------------------------------------------- parsing


def test_paper_strings_parse():
    assert parse_arch(LENET) == (ConvSpec(15, 5), PoolSpec(2), ConvSpec(40, 5), PoolSpec(2), DenseSpec(300))
    assert parse_arch(MID) == (ConvSpec(32, 5), PoolSpec(2), ConvSpec(64, 5), PoolSpec(2), DenseSpec(1024))
    assert parse_arch(CIFAR) == (
        ConvSpec(96, 3), ConvSpec(256, 3), PoolSpec(2), ConvSpec(384, 3), PoolSpec(2),
        ConvSpec(384, 3), ConvSpec(256, 3), DenseSpec(1024), DenseSpec(1024),
    )


@pytest.mark.parametrize("arch", [LENET, MID, CIFAR, "24C3p1-P2-28C3p1-P2-256", "8", "4C3p1-P2-8", "P2-10"])
def test_format_round_trip(arch):
    assert format_arch(parse_arch(arch)) == arch


def test_padding_suffix():
    assert parse_arch("32C3p1") == (ConvSpec(32, 3, 1),)
    assert parse_arch("8C5p2-P2") == (ConvSpec(8, 5, 2), PoolSpec(2))
    assert parse_arch("8C5p0") == (ConvSpec(8, 5, 0),)  # explicit "valid"
    # 32C3p1 keeps the 8x8 size: 8 + 2*1 - 3 + 1 = 8; 8C5p2 likewise: 8 + 4 - 5 + 1 = 8
    assert layer_shapes("32C3p1", (1, 8, 8), 10)[0][2] == (32, 8, 8)
    assert layer_shapes("8C5p2", (3, 8, 8), 10)[0][2] == (8, 8, 8)
    # without padding 3x3 shrinks by 2: 8 - 3 + 1 = 6
    assert layer_shapes("32C3", (1, 8, 8), 10)[0][2] == (32, 6, 6)


# --------------------------------------------------------------------------- shapes


def _outs(arch, input_shape, n_classes=10):
    return [out for _, _, out in layer_shapes(arch, input_shape, n_classes)]


def test_lenet_shapes():
    # (1,28,28): 15C5 -> 28-5+1 = 24; P2 -> 12; 40C5 -> 12-5+1 = 8; P2 -> 4; 300; readout 10
    assert _outs(LENET, (1, 28, 28)) == [(15, 24, 24), (15, 12, 12), (40, 8, 8), (40, 4, 4), (300,), (10,)]
    # (3,32,32): 15C5 -> 28; P2 -> 14; 40C5 -> 10; P2 -> 5; 300; 10
    assert _outs(LENET, (3, 32, 32)) == [(15, 28, 28), (15, 14, 14), (40, 10, 10), (40, 5, 5), (300,), (10,)]


def test_mid_shapes():
    # (1,28,28): 32C5 -> 24; P2 -> 12; 64C5 -> 8; P2 -> 4; 1024; 10
    assert _outs(MID, (1, 28, 28)) == [(32, 24, 24), (32, 12, 12), (64, 8, 8), (64, 4, 4), (1024,), (10,)]
    # (3,32,32): 32C5 -> 28; P2 -> 14; 64C5 -> 10; P2 -> 5; 1024; 10
    assert _outs(MID, (3, 32, 32)) == [(32, 28, 28), (32, 14, 14), (64, 10, 10), (64, 5, 5), (1024,), (10,)]


def test_cifar_shapes():
    # (3,32,32): 96C3 -> 30; 256C3 -> 28; P2 -> 14; 384C3 -> 12; P2 -> 6; 384C3 -> 4; 256C3 -> 2;
    # 1024; 1024; readout 10
    assert _outs(CIFAR, (3, 32, 32)) == [
        (96, 30, 30), (256, 28, 28), (256, 14, 14), (384, 12, 12), (384, 6, 6),
        (384, 4, 4), (256, 2, 2), (1024,), (1024,), (10,),
    ]
    # (1,28,28): 96C3 -> 26; 256C3 -> 24; P2 -> 12; 384C3 -> 10; P2 -> 5; 384C3 -> 3; 256C3 -> 1
    assert _outs(CIFAR, (1, 28, 28)) == [
        (96, 26, 26), (256, 24, 24), (256, 12, 12), (384, 10, 10), (384, 5, 5),
        (384, 3, 3), (256, 1, 1), (1024,), (1024,), (10,),
    ]


def test_shapes_chain_and_readout_appended():
    shapes = layer_shapes(LENET, (1, 28, 28), 7)
    assert len(shapes) == len(parse_arch(LENET)) + 1
    assert shapes[0][1] == (1, 28, 28)
    for (_, _, out), (_, nxt_in, _) in zip(shapes, shapes[1:]):
        assert out == nxt_in
    spec, in_shape, out_shape = shapes[-1]
    assert spec == DenseSpec(7) and in_shape == (300,) and out_shape == (7,)
    # the readout is appended even to an all-convolutional string
    assert layer_shapes("4C3", (1, 8, 8), 3)[-1] == (DenseSpec(3), (4, 6, 6), (3,))


def test_pool_floors():
    # P3 on 8x8: floor(8/3) = 2
    assert _outs("P3", (2, 8, 8)) == [(2, 2, 2), (10,)]


# --------------------------------------------------------------------------- errors


def _error(arch, shape=None) -> str:
    with pytest.raises(ArchError) as info:
        if shape is None:
            parse_arch(arch)
        else:
            layer_shapes(arch, shape, 10)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, ValueError)
    return message


def _assert_points(message, token_number, character, token):
    assert f"token {token_number}" in message, message
    assert f"character {character}" in message, message
    assert repr(token) in message, message


@pytest.mark.parametrize("arch", ["", "   "])
def test_empty_string(arch):
    message = _error(arch)
    assert "empty" in message and "expected" in message and "15C5" in message


def test_not_a_string():
    _error(None)


def test_doubled_dash():
    message = _error("15C5--P2")  # the empty token between the dashes starts at character 6
    _assert_points(message, 2, 6, "")
    assert "expected" in message and "'-'" in message


def test_trailing_dash():
    message = _error("15C5-P2-")  # token 3 would start at character 9
    _assert_points(message, 3, 9, "")
    assert "expected" in message


def test_leading_dash():
    _assert_points(_error("-15C5"), 1, 1, "")


def test_unknown_token():
    message = _error("15C5-P2-15X5-300")  # 15X5 starts at character 9
    _assert_points(message, 3, 9, "15X5")
    assert "expected" in message
    assert "C<kernel>" in message and "P<kernel>" in message and "<units>" in message


@pytest.mark.parametrize("token", ["15c5", "C5", "15C", "P", "p2", "15C5p", "15C5P1", "3.5", "1e3", "+3"])
def test_malformed_tokens(token):
    _assert_points(_error(f"8-{token}"), 2, 3, token)


def test_conv_after_dense():
    message = _error("15C5-300-40C5")  # 40C5 starts at character 10
    _assert_points(message, 3, 10, "40C5")
    assert "fully connected" in message


def test_pool_after_dense():
    _assert_points(_error("300-P2"), 2, 5, "P2")


def test_pool_zero():
    message = _error("8C3-P0")
    _assert_points(message, 2, 5, "P0")
    assert ">= 1" in message


@pytest.mark.parametrize("arch", ["0C3", "8C0", "0", "4C3-0"])
def test_zero_sizes(arch):
    message = _error(arch)
    assert ">= 1" in message
    assert re.search(r"token \d+ '.*' at character \d+", message)


@pytest.mark.parametrize("token, pad, kernel", [("8C3p3", 3, 3), ("8C3p4", 4, 3), ("8C1p1", 1, 1)])
def test_padding_not_below_kernel(token, pad, kernel):
    message = _error(f"4C3p1-{token}")  # second token at character 7
    _assert_points(message, 2, 7, token)
    assert f"padding {pad} must be < kernel {kernel}" in message


def test_kernel_larger_than_input():
    # on (1,8,8): 15C5 -> 4x4; P2 -> 2x2; 40C5 does not fit: token 3 at character 9
    message = _error(LENET, (1, 8, 8))
    _assert_points(message, 3, 9, "40C5")
    assert "kernel 5" in message and "2x2" in message
    # straight away on the input
    message = _error("8C9", (1, 8, 8))
    _assert_points(message, 1, 1, "8C9")
    assert "8x8" in message


def test_pool_larger_than_input():
    # 4C7 on 8x8 -> 2x2; P3 does not fit: token 2 at character 5
    message = _error("4C7-P3", (1, 8, 8))
    _assert_points(message, 2, 5, "P3")
    assert "2x2" in message


def test_cifar_arch_too_deep_for_small_input():
    # 96C3 on 8x8 -> 6; 256C3 -> 4; P2 -> 2; 384C3 cannot fit. Token 4 starts after
    # "96C3-256C3-P2-" (5 + 6 + 3 = 14 characters), i.e. at character 15
    message = _error(CIFAR, (3, 8, 8))
    _assert_points(message, 4, 15, "384C3")
