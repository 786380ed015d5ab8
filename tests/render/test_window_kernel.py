"""The C extension (``dicom_service/render/_window.c``) against numpy's path.

``lut._apply_linear`` windows 16-bit frames with the C extension and keeps the
numpy computation as reference and fallback: every level the CPU has (plain C,
SSE2, AVX2) must give exactly numpy's bytes, whatever Bits Stored, sign, slope,
window, inversion and frame length (the vector loops leave a tail to the plain
loop). ``lut._lookup`` does a 65536-entry table look-up of 16-bit frames in C,
which must equal numpy's ``take``. Both refuse what would read or write
outside their buffers.
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
    assert lut._kernel is _window
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


def test_the_table_look_up_is_numpys_take() -> None:
    rng = np.random.default_rng(11)
    table = rng.integers(0, 256, 65536).astype(np.uint8)
    for shape in ((0,), (1,), (7, 9), (64, 48), (3, 5, 11)):
        frame = rng.integers(0, 1 << 16, shape).astype(np.uint16)
        assert np.array_equal(lut._lookup(table, frame), np.take(table, frame)), shape
    frame = rng.integers(0, 1 << 16, (40, 30)).astype(np.uint16)
    raw = bytearray(1 + frame.nbytes)
    raw[1:] = frame.tobytes()
    unaligned = np.frombuffer(bytes(raw), dtype=np.uint16, offset=1).reshape(40, 30)
    for view in (frame.T, frame[::3, 1::2], unaligned):
        assert np.array_equal(lut._lookup(table, view), np.take(table, view))
    # 8-bit containers stay with numpy
    small = rng.integers(0, 256, (5, 5)).astype(np.uint8)
    assert np.array_equal(lut._lookup(table[:256], small), np.take(table[:256], small))


def test_non_linear_windows_and_luts_render_as_the_table_says() -> None:
    """SIGMOID and a Modality LUT go through the table, looked up in C."""
    from dicom_service.render.decode import ImageHeader

    rng = np.random.default_rng(3)
    frame = rng.integers(-1000, 3000, (33, 47)).astype(np.int16)
    header = ImageHeader(
        transfer_syntax="1.2.840.10008.1.2.1", rows=33, columns=47, samples=1,
        photometric="MONOCHROME2", planar=0, bits_allocated=16, bits_stored=12, signed=True,
        frames=1, float_pixels=False, slope=1.0, intercept=0.0, modality_lut=None,
        windows=(), voi_lut=None, palette=None, pixel_offset=None, pixel_length=None)
    window = Window(400.0, 2000.0, VoiFunction.SIGMOID)
    got = lut.grayscale(header, frame, window)
    table = lut._cached_table(2, 12, True, 1.0, 0.0, window, False)
    assert np.array_equal(got, np.take(table, frame.view(np.uint16)))
    assert 0 < int(got.min()) < int(got.max()) < 255


def test_a_wrong_table_or_output_is_refused() -> None:
    frame = np.zeros(16, dtype=np.uint16)
    table = np.zeros(65536, dtype=np.uint8)
    with pytest.raises(ValueError, match="65536 one-byte entries"):
        _window.lookup16(frame, np.empty(16, np.uint8), table[:65535])
    with pytest.raises(ValueError, match="65536 one-byte entries"):
        _window.lookup16(frame, np.empty(16, np.uint8), np.zeros(65536, np.uint16))
    with pytest.raises(ValueError, match="one byte per 16-bit input value"):
        _window.lookup16(frame, np.empty(15, np.uint8), table)
    with pytest.raises(TypeError):
        _window.lookup16(frame, bytes(16), table)


def test_the_window_benchmark_runs() -> None:
    """``benchmarks/window.py`` (its figures are in benchmarks/README.md)."""
    from benchmarks import window

    result = window.run(repeat=1)
    assert result["level"] == _window.BEST_LEVEL
    figures = result["figures"]
    assert set(figures) == {"linear_512", "table_512", "table_3000x2500"}
    assert all(pair["numpy_ms"] > 0 and pair["c_ms"] > 0 for pair in figures.values())
