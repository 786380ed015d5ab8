"""The grey-scale display step of rendering alone: numpy against the C extension.

``dicom_service.render.lut`` turns a 16-bit frame into 8-bit display values
either by a linear window (one clipped affine map in float32) or, for every
other window and LUT, by a look-up in a 65536-entry table. Both are done by
``render/_window.c`` when it is built, with numpy as the reference and the
fallback. This times both ways on a 512 x 512 CT frame (linear window 40/400
over Rescale Intercept -1024, and a SIGMOID window through the table) and on a
3000 x 2500 radiograph-sized frame (the table), in this process, best of
``--repeat`` runs.

Usage::

    .venv/bin/python benchmarks/window.py
    .venv/bin/python benchmarks/window.py --repeat 9

The last line printed is one JSON object with every figure (ms per frame).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dicom_service.render import lut  # noqa: E402
from dicom_service.render.params import VoiFunction, Window  # noqa: E402


def _best_ms(fn: Callable[[], Any], calls: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return round(best * 1000, 4)


def run(repeat: int) -> dict[str, object]:
    if lut._kernel is None:
        raise SystemExit("the C extension is not built: pip install -e . (needs gcc)")
    rng = np.random.default_rng(2026)
    ct = np.clip(rng.normal(40, 400, (512, 512)), -1024, 3071).astype(np.int16) + 1024
    ct = ct.astype(np.uint16)  # CT stored values, Rescale Intercept -1024
    radiograph = np.clip(rng.normal(2000, 600, (3000, 2500)), 0, 4095).astype(np.uint16)
    linear = lut._linear_map(1.0, -1024.0, Window(40.0, 400.0), False)
    assert linear is not None
    sigmoid = lut._cached_table(2, 12, False, 1.0, -1024.0,
                                Window(40.0, 400.0, VoiFunction.SIGMOID), False)
    assert np.array_equal(lut._apply_linear(ct, 12, False, *linear),
                          lut._apply_linear_numpy(ct, 12, False, *linear))
    assert np.array_equal(lut._lookup(sigmoid, radiograph), np.take(sigmoid, radiograph))
    figures = {
        "linear_512": {
            "numpy_ms": _best_ms(lambda: lut._apply_linear_numpy(ct, 12, False, *linear),
                                 500, repeat),
            "c_ms": _best_ms(lambda: lut._apply_linear(ct, 12, False, *linear), 500, repeat),
        },
        "table_512": {
            "numpy_ms": _best_ms(lambda: np.take(sigmoid, ct), 500, repeat),
            "c_ms": _best_ms(lambda: lut._lookup(sigmoid, ct), 500, repeat),
        },
        "table_3000x2500": {
            "numpy_ms": _best_ms(lambda: np.take(sigmoid, radiograph), 10, repeat),
            "c_ms": _best_ms(lambda: lut._lookup(sigmoid, radiograph), 10, repeat),
        },
    }
    return {"level": lut._kernel.BEST_LEVEL, "repeat": repeat, "figures": figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best counts")
    args = parser.parse_args()
    result = run(args.repeat)
    print(f"C level {result['level']} (0 plain C, 1 SSE2, 2 AVX2); ms per frame, best of "
          f"{args.repeat}")
    figures: dict[str, dict[str, float]] = result["figures"]  # type: ignore[assignment]
    for name, pair in figures.items():
        print(f"  {name:16} numpy {pair['numpy_ms']:8.3f}   C {pair['c_ms']:8.3f}   "
              f"{pair['numpy_ms'] / pair['c_ms']:5.1f}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
