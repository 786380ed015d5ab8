"""The C window (``dicom_service/render/_window.c``) against numpy's path.

``lut._apply_linear`` windows 16-bit frames with the C extension and keeps the
numpy computation as reference and fallback: every level the CPU has (plain C,
SSE2, AVX2) must give exactly numpy's bytes, whatever Bits Stored, sign, slope,
window, inversion and frame length (the vector loops leave a tail to the plain
loop), and refuse what would read or write outside its buffers.
"""

from __future__ import annotations

import itertools
import platform

import numpy as np
import pytest

from dicom_service.render import _window, lut
from dicom_service.render.params import VoiFunction, Window


def _kernel(frame: np.ndarray, bits: int, signed: bool, a: float, b: float,
            level: int) -> np.ndarray:
    out = np.empty(frame.shape, dtype=np.uint8)
    _window.linear16(np.ascontiguousarray(frame), out, signed, bits, a, b, level)
    return out


LEVELS = range(_window.BEST_LEVEL + 1)


def test_the_extension_is_built_and_used() -> None:
    """``./dev test`` builds it (pip install -e .): the fast path is what is tested."""
    assert lut._kernel is not None and lut._kernel[1] == _window.BEST_LEVEL
    if platform.machine() == "x86_64":
        assert _window.BEST_LEVEL >= 1  # every x86-64 has SSE2


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_gives_numpys_bytes(level: int) -> None:
    rng = np.random.default_rng(20261126 + level)
    for bits, signed in itertools.product(range(1, 17), (False, True)):
        # garbage above Bits Stored must be masked or sign-extended away
        frame = rng.integers(0, 1 << 16, (23, 37), dtype=np.uint16)
        if signed:
            frame = frame.view(np.int16)
        for slope, intercept, (center, width), function, invert in itertools.product(
                (1.0, 0.5, 2.0, -1.5, 0.001953125), (0.0, -1024.0, 12.3, -32768.0),
                ((40.0, 400.0), (-600.0, 1500.0), (0.5, 1.5), (2048.0, 4096.0), (0.0, 3.0)),
                (VoiFunction.LINEAR, VoiFunction.LINEAR_EXACT), (False, True)):
            linear = lut._linear_map(slope, intercept, Window(center, width, function), invert)
            assert linear is not None
            expected = lut._apply_linear_numpy(frame, bits, signed, *linear)
            got = _kernel(frame, bits, signed, *linear, level)
            assert np.array_equal(got, expected), (level, bits, signed, slope, intercept,
                                                   center, width, function, invert)


@pytest.mark.parametrize("level", LEVELS)
def test_ties_round_to_even_and_every_length_is_done(level: int) -> None:
    # a = 0.5 puts every odd stored value on a tie: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 ...
    values = np.arange(0, 600, dtype=np.uint16)
    got = _kernel(values, 16, False, 0.5, 0.0, level)
    assert np.array_equal(got, np.clip(np.rint(values * 0.5), 0, 255).astype(np.uint8))
    assert got[1] == 0 and got[3] == 2 and got[5] == 2 and got[599] == 255
    for n in range(0, 50):  # lengths around the 8- and 16-value vector steps
        frame = np.arange(-n * 40, n * 40, 80, dtype=np.int16)[:n]
        expected = lut._apply_linear_numpy(frame, 16, True, 0.25, 127.0)
        assert np.array_equal(_kernel(frame, 16, True, 0.25, 127.0, level), expected), n


def test_frames_that_are_views_are_windowed_as_numpy_does() -> None:
    rng = np.random.default_rng(5)
    frame = rng.integers(-2000, 3000, (64, 80)).astype(np.int16)
    for view in (frame[:, ::2], frame[::-1], frame.T, frame[3:40, 7:9]):
        assert np.array_equal(lut._apply_linear(view, 12, True, 0.7, 20.0),
                              lut._apply_linear_numpy(view, 12, True, 0.7, 20.0))


def test_unaligned_frames_are_windowed_as_numpy_does() -> None:
    """A frame viewed straight from a file's bytes may start at an odd address."""
    values = np.arange(-300, 300, 7, dtype=np.int16)
    raw = bytearray(1 + values.nbytes)
    raw[1:] = values.tobytes()
    unaligned = np.frombuffer(bytes(raw), dtype=np.int16, offset=1)
    assert not unaligned.flags.aligned and np.array_equal(unaligned, values)
    assert np.array_equal(lut._apply_linear(unaligned, 16, True, 0.3, 100.0),
                          lut._apply_linear_numpy(values, 16, True, 0.3, 100.0))


def test_out_of_range_coefficients_take_numpys_path() -> None:
    frame = np.arange(16, dtype=np.uint16)
    for a, b in ((1e39, 0.0), (1.0, -1e39), (float("nan"), 0.0)):
        with np.errstate(all="ignore"):
            assert np.array_equal(lut._apply_linear(frame, 16, False, a, b),
                                  lut._apply_linear_numpy(frame, 16, False, a, b))


def test_what_would_leave_the_buffers_is_refused() -> None:
    frame = np.zeros(16, dtype=np.uint16)
    with pytest.raises(ValueError, match="one byte per 16-bit input value"):
        _window.linear16(frame, np.empty(17, np.uint8), False, 16, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="one byte per 16-bit input value"):
        _window.linear16(frame[:15], np.empty(16, np.uint8), False, 16, 1.0, 0.0, 0)
    for bits in (0, 17, -3):
        with pytest.raises(ValueError, match="bits_stored must be 1 to 16"):
            _window.linear16(frame, np.empty(16, np.uint8), False, bits, 1.0, 0.0, 0)
    for level in (-1, _window.BEST_LEVEL + 1):
        with pytest.raises(ValueError, match="no such level"):
            _window.linear16(frame, np.empty(16, np.uint8), False, 16, 1.0, 0.0, level)
    with pytest.raises(TypeError):  # the output must be writable
        _window.linear16(frame, bytes(16), False, 16, 1.0, 0.0, 0)
    with pytest.raises((TypeError, BufferError, ValueError)):  # and contiguous
        _window.linear16(frame, np.empty(32, np.uint8)[::2], False, 16, 1.0, 0.0, 0)
