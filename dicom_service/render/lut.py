"""Grey-scale and colour transforms to 8-bit display values.

Grey-scale pipeline (PS3.3 Section C.11, PS3.4 Annex N): stored value ->
Modality LUT (Rescale Slope/Intercept, or the Modality LUT Sequence) -> VOI LUT
(a window with LINEAR, LINEAR_EXACT or SIGMOID, PS3.3 Section C.11.2.1.2, or
the VOI LUT Sequence) -> 0..255, inverted for MONOCHROME1.

For integer data up to 16 bits with a linear window (LINEAR or LINEAR_EXACT)
and a linear Modality LUT (Rescale Slope/Intercept), the whole pipeline is one
affine map clipped to 0..255, computed in float32. For 16-bit containers a
small C extension (``_window.c``, SSE2 or AVX2) does it in one pass: 0.04 ms
for a 512 x 512 frame against 0.125 ms for the six numpy passes, which stay as
the reference and the fallback where the extension is not built (the same
bytes: ``tests/render/test_window_kernel.py``). numpy computes it in a scratch
buffer kept per thread, about half the cost of a table look-up (numpy's
``take`` first widens every 16-bit index to 64 bits). Any other integer pipeline is
folded into one lookup table over every possible container value (the masking
to Bits Stored and the sign extension are folded in too), so a frame costs one
look-up per pixel: in C for 16-bit containers (``lookup16``: 2.3 against 11.7
ms for a 3000 x 2500 radiograph, and no 8-byte index copy per pixel), else
numpy's ``take``. Tables are cached by the parameters that define them.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

from dicom_service.render.decode import ImageHeader, Lut
from dicom_service.render.params import VoiFunction, Window

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
ByteArray = np.ndarray[Any, np.dtype[np.uint8]]

log = logging.getLogger(__name__)


def _load_kernel() -> ModuleType | None:
    """The C extension (``_window.c``), or ``None`` if it is not built."""
    try:
        from dicom_service.render import _window
    except ImportError:
        log.warning("render: the C window extension is not built (pip install -e . builds "
                    "it); 16-bit frames are windowed with numpy, slower")
        return None
    return _window


_kernel = _load_kernel()
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # a and b must stay finite in float32


def window_to_8bit(values: FloatArray, window: Window) -> FloatArray:
    """Apply a window to modality values; output in [0, 255] (not rounded).

    PS3.3 Section C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT) and
    C.11.2.1.3.1 (SIGMOID), with y_min = 0 and y_max = 255.
    """
    c, w = window.center, window.width
    if window.function is VoiFunction.SIGMOID:
        with np.errstate(over="ignore"):  # exp -> inf gives y = 0, which is right
            sigmoid: FloatArray = 255.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
        return sigmoid
    if window.function is VoiFunction.LINEAR_EXACT:
        y = ((values - c) / w + 0.5) * 255.0
        lo, hi = c - w / 2.0, c + w / 2.0
    else:
        y = ((values - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0 if w > 1.0 else values * 0.0
        lo, hi = c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0
    y = np.where(values <= lo, 0.0, np.where(values > hi, 255.0, y))
    return np.clip(y, 0.0, 255.0)


def _stored_values(container: np.ndarray[Any, Any], bits_stored: int,
                   signed: bool) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Container values (unsigned) -> stored values: mask to Bits Stored, then
    sign-extend when Pixel Representation is 1 (PS3.5 Section 8.1.1)."""
    mask = (1 << bits_stored) - 1
    stored = container.astype(np.int64) & mask
    if signed:
        sign = 1 << (bits_stored - 1)
        stored = np.where(stored & sign, stored - (1 << bits_stored), stored)
    return stored


def _modality(stored: np.ndarray[Any, Any], slope: float, intercept: float,
              modality_lut: Lut | None) -> FloatArray:
    if modality_lut is not None:
        return modality_lut.apply(stored)
    result: FloatArray = stored.astype(np.float64) * slope + intercept
    return result


def _voi(values: FloatArray, window: Window | None, voi_lut: Lut | None) -> FloatArray:
    if window is not None:
        return window_to_8bit(values, window)
    if voi_lut is not None:
        top = float((1 << voi_lut.bits) - 1) if voi_lut.bits > 0 else float(voi_lut.data.max())
        return np.clip(voi_lut.apply(values) * (255.0 / max(top, 1.0)), 0.0, 255.0)
    raise ValueError("no VOI transform")  # pragma: no cover - callers resolve one


def _finish(y: FloatArray, invert: bool) -> ByteArray:
    out = np.rint(y).astype(np.uint8)
    return (255 - out).astype(np.uint8) if invert else out


@lru_cache(maxsize=128)
def _cached_table(itemsize: int, bits_stored: int, signed: bool, slope: float,
                  intercept: float, window: Window, invert: bool) -> ByteArray:
    container = np.arange(1 << (8 * itemsize), dtype=np.int64)
    values = _modality(_stored_values(container, bits_stored, signed), slope, intercept, None)
    table = _finish(window_to_8bit(values, window), invert)
    table.setflags(write=False)
    return table


def _linear_map(slope: float, intercept: float, window: Window,
                invert: bool) -> tuple[float, float] | None:
    """(a, b) with display value = clip(a * stored + b, 0, 255) for a linear
    window over a linear Modality LUT, else ``None``.

    LINEAR (width > 1) and LINEAR_EXACT are affine in the modality value between
    their bounds and reach exactly 0 and 255 at them (PS3.3 C.11.2.1.2.1,
    C.11.2.1.3.2), so clipping the affine map is the same function."""
    c, w = window.center, window.width
    if window.function is VoiFunction.LINEAR and w > 1.0:
        scale, shift = 255.0 / (w - 1.0), (0.5 - (c - 0.5) / (w - 1.0)) * 255.0
    elif window.function is VoiFunction.LINEAR_EXACT and w > 0.0:
        scale, shift = 255.0 / w, (0.5 - c / w) * 255.0
    else:
        return None
    a, b = slope * scale, intercept * scale + shift
    return (-a, 255.0 - b) if invert else (a, b)


_scratch = threading.local()
# the largest scratch buffer a thread keeps: a 512 x 512 frame's (1 MiB); every
# thread of the pool could keep one
_KEPT_SCRATCH = 512 * 512


def _float_scratch(shape: tuple[int, ...]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A float32 buffer of ``shape``: this thread's own, kept for the next frame
    when small (a thread renders one frame at a time, and allocating a megabyte
    a frame costs page faults); a new one for larger frames."""
    buffer: np.ndarray[Any, np.dtype[np.float32]] | None = getattr(_scratch, "buffer", None)
    if buffer is not None and buffer.shape == shape:
        return buffer
    buffer = np.empty(shape, dtype=np.float32)
    if buffer.size <= _KEPT_SCRATCH:
        _scratch.buffer = buffer
    return buffer


def _apply_linear(frame: np.ndarray[Any, Any], bits_stored: int, signed: bool,
                  a: float, b: float) -> ByteArray:
    """clip(a * stored + b, 0, 255), rounded, of a 8- or 16-bit integer frame."""
    if (_kernel is not None and frame.dtype.itemsize == 2
            and abs(a) <= _FLOAT32_MAX and abs(b) <= _FLOAT32_MAX):
        out: ByteArray = np.empty(frame.shape, dtype=np.uint8)
        _kernel.linear16(_c_array(frame), out, signed, bits_stored, a, b, _kernel.BEST_LEVEL)
        return out
    return _apply_linear_numpy(frame, bits_stored, signed, a, b)


def _c_array(frame: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``frame`` C-contiguous and aligned, for the C extension (a view into a
    file's bytes at an odd offset is not aligned: then a copy)."""
    return np.require(frame, requirements=("C", "A"))


def _lookup(table: ByteArray, container: np.ndarray[Any, Any]) -> ByteArray:
    """``table[container]``: in C for 16-bit containers (no 64-bit copy of the
    indices), else numpy's ``take``."""
    if _kernel is not None and container.dtype == np.uint16 and table.size == 65536:
        out: ByteArray = np.empty(container.shape, dtype=np.uint8)
        _kernel.lookup16(_c_array(container), out, np.ascontiguousarray(table, np.uint8))
        return out
    result: ByteArray = np.take(table, container)
    return result


def _apply_linear_numpy(frame: np.ndarray[Any, Any], bits_stored: int, signed: bool,
                        a: float, b: float) -> ByteArray:
    """``_apply_linear`` in numpy: the reference for the C window, and its fallback."""
    container_bits = 8 * frame.dtype.itemsize
    unsigned = frame.view(f"u{frame.dtype.itemsize}")
    if bits_stored >= container_bits:
        stored: np.ndarray[Any, Any] = unsigned.view(f"i{frame.dtype.itemsize}") if signed \
            else unsigned
    elif signed:  # sign-extend from Bits Stored: shift the sign bit to the top and back
        spare = container_bits - bits_stored
        stored = (unsigned << spare).view(f"i{frame.dtype.itemsize}") >> spare
    else:
        stored = unsigned & ((1 << bits_stored) - 1)
    y = _float_scratch(frame.shape)
    # widen first, then scale in place: one cast pass and one float32 pass cost
    # less than a multiplication that casts its input chunk by chunk
    np.copyto(y, stored, casting="unsafe")
    np.multiply(y, np.float32(a), out=y)
    np.add(y, np.float32(b), out=y)
    np.clip(y, np.float32(0.0), np.float32(255.0), out=y)
    np.rint(y, out=y)  # as the table rounds (halves to even)
    result: ByteArray = np.empty(frame.shape, dtype=np.uint8)
    np.copyto(result, y, casting="unsafe")
    return result


def full_range_window(header: ImageHeader, frame: np.ndarray[Any, Any]) -> Window:
    """The window spanning the frame's modality values (no stored window or VOI LUT)."""
    bits = min(header.bits_stored, 8 * frame.dtype.itemsize)
    if frame.dtype.kind in "iu":
        container = frame.view(f"u{frame.dtype.itemsize}")
        lo_hi = _stored_values(np.array([container.min(), container.max()]), bits, header.signed)
        if header.signed:  # the extremes of signed values are not those of the containers
            stored = _stored_values(container, bits, header.signed)
            lo_hi = np.array([stored.min(), stored.max()])
        if header.modality_lut is not None:
            mapped = header.modality_lut.apply(np.arange(lo_hi[0], lo_hi[1] + 1))
        else:
            mapped = _modality(lo_hi, header.slope, header.intercept, None)
    else:
        mapped = _modality(frame, header.slope, header.intercept, None)
    lo, hi = float(mapped.min()), float(mapped.max())
    return Window((lo + hi) / 2.0, max(hi - lo, 1e-6), VoiFunction.LINEAR_EXACT)


def grayscale(header: ImageHeader, frame: np.ndarray[Any, Any],
              window: Window | None) -> ByteArray:
    """8-bit display values of a one-sample frame.

    ``window`` (the client's) wins; else the first stored window; else the VOI
    LUT Sequence; else the frame's full range.
    """
    voi_lut = None
    if window is None and header.windows:
        window = header.windows[0]
    if window is None and header.voi_lut is not None:
        voi_lut = header.voi_lut
    if window is None and voi_lut is None:
        window = full_range_window(header, frame)
    invert = header.photometric == "MONOCHROME1"
    if frame.dtype.kind in "iu" and frame.dtype.itemsize <= 2:
        container = frame.view(f"u{frame.dtype.itemsize}")
        bits = min(header.bits_stored, 8 * frame.dtype.itemsize)
        if header.modality_lut is None and voi_lut is None and window is not None:
            linear = _linear_map(header.slope, header.intercept, window, invert)
            if linear is not None:
                return _apply_linear(frame, bits, header.signed, *linear)
            table = _cached_table(frame.dtype.itemsize, bits, header.signed,
                                  header.slope, header.intercept, window, invert)
        else:
            every = np.arange(1 << (8 * frame.dtype.itemsize), dtype=np.int64)
            values = _modality(_stored_values(every, bits, header.signed), header.slope,
                               header.intercept, header.modality_lut)
            table = _finish(_voi(values, window, voi_lut), invert)
        return _lookup(table, container)
    # 32-bit integers and floats: compute per pixel
    if frame.dtype.kind in "iu":
        stored = _stored_values(frame.view(f"u{frame.dtype.itemsize}"),
                                min(header.bits_stored, 32), header.signed)
    else:
        stored = frame.astype(np.float64)
    values = _modality(stored, header.slope, header.intercept, header.modality_lut)
    return _finish(_voi(values, window, voi_lut), invert)


def colour(header: ImageHeader, frame: np.ndarray[Any, Any]) -> ByteArray:
    """8-bit RGB of a colour frame: PALETTE COLOR through its palette (PS3.3
    Section C.7.6.3.1.5), RGB scaled down from Bits Stored when wider than 8."""
    if header.palette is not None:
        first, table = header.palette
        index = np.clip(frame.astype(np.int64) - first, 0, len(table) - 1)
        result: ByteArray = table[index]
        return result
    if frame.dtype != np.uint8:
        shift = max(header.bits_stored - 8, 0)
        frame = np.clip(frame.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
    same: ByteArray = frame
    return same


def to_display(header: ImageHeader, frame: np.ndarray[Any, Any],
               window: Window | None) -> ByteArray:
    """Display values: (rows, columns) grey or (rows, columns, 3) RGB, uint8."""
    if header.photometric == "PALETTE COLOR" or frame.ndim == 3:
        return colour(header, frame)
    return grayscale(header, frame, window)
