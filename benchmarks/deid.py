"""De-identification throughput, side by side, in one run.

On one synthetic CT series (``sample_data.generate.write_ct_series``, default
300 instances of 512x512, Explicit VR Little Endian), files per second of:

  a. ``pydicom``     read + write only (the floor every tool pays);
  b. ``engine_basic`` read + the full Annex E Basic Profile + write, and
     ``engine``      read + this service's active profile (``default``: basic +
                     Clean Pixel Data + Clean Descriptors) + write;
  c. ``deid``        pydicom/deid ``replace_identifiers`` with its default
                     ``dicom`` recipe (``DeidRecipe()``), saving to a folder;
  d. ``dicognito``   read + ``Anonymizer().anonymize`` + write;

and (e) the OCR cost per image of the pixel step
(``dicom_service.deidentify.pixels.ocr_timing``: decode + render + Tesseract)
on the sample set's ultrasound and secondary-capture images, when that module
is available. Ratios are against (a).

Usage::

    .venv/bin/python benchmarks/deid.py                  # 300 x 512^2, 1 repeat
    .venv/bin/python benchmarks/deid.py --n 100 --repeat 3 --json-out /tmp/deid.json

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and this file
# ("deid.py") would hide the deid library it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from pydicom import __version__ as pydicom_version  # noqa: E402
from pydicom import dcmread  # noqa: E402

from dicom_service.deidentify import Pseudonymiser, derive_date_shift, load_profiles  # noqa: E402
from sample_data.generate import generate, write_ct_series  # noqa: E402


def _pseudonymiser() -> Pseudonymiser:
    key = hashlib.sha256(b"benchmark enrolment").digest()
    return Pseudonymiser(
        key=key, pseudonym="ERN-BENCH00001", date_shift_days=derive_date_shift(key)
    )


def run_pydicom(paths: list[Path], out: Path) -> None:
    for i, path in enumerate(paths):
        dcmread(path).save_as(out / f"{i:05d}.dcm")


def make_engine(profiles_dir: Path, name: str | None = None) -> Callable[[list[Path], Path], None]:
    profiles = load_profiles(profiles_dir)
    profile = profiles.get(name) if name else profiles.active
    p = _pseudonymiser()

    def run(paths: list[Path], out: Path) -> None:
        for i, path in enumerate(paths):
            ds = dcmread(path)
            profile.apply(ds, p)
            ds.save_as(out / f"{i:05d}.dcm")

    run.profile = f"{profile.name} v{profile.version}"  # type: ignore[attr-defined]
    return run


def make_deid() -> Callable[[list[Path], Path], None]:
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers
    from deid.logger import bot

    bot.level = 0  # quiet: its progress messages would dominate the terminal
    recipe = DeidRecipe()  # deid's default "dicom" recipe

    def run(paths: list[Path], out: Path) -> None:
        replace_identifiers(
            dicom_files=[str(p) for p in paths], deid=recipe, save=True,
            overwrite=True, output_folder=str(out),
        )

    return run


def make_dicognito() -> Callable[[list[Path], Path], None]:
    from dicognito.anonymizer import Anonymizer

    def run(paths: list[Path], out: Path) -> None:
        anonymizer = Anonymizer(seed="benchmark")
        for i, path in enumerate(paths):
            ds = dcmread(path)
            anonymizer.anonymize(ds)
            ds.save_as(out / f"{i:05d}.dcm")

    return run


def measure(
    run: Callable[[list[Path], Path], None], paths: list[Path], work: Path, repeat: int
) -> dict[str, Any]:
    """Files/s of ``run`` over ``paths`` (median of ``repeat`` runs, after a
    warm-up on 10 files), each run into a fresh empty folder."""
    warm = work / "warm"
    warm.mkdir()
    run(paths[:10], warm)
    shutil.rmtree(warm)
    seconds = []
    for r in range(repeat):
        out = work / f"run{r}"
        out.mkdir()
        started = time.perf_counter()
        run(paths, out)
        seconds.append(time.perf_counter() - started)
        written = len(list(out.iterdir()))
        if written != len(paths):
            raise RuntimeError(f"{written} files written, expected {len(paths)}")
        shutil.rmtree(out)
    median = statistics.median(seconds)
    return {
        "files_per_s": round(len(paths) / median, 1),
        "seconds": round(median, 3),
        "runs": [round(s, 3) for s in seconds],
    }


def ocr_cost(work: Path) -> dict[str, Any]:
    """Milliseconds per image of text detection on the sample US/SC images."""
    try:
        from dicom_service.deidentify.pixels import ocr_timing
    except ImportError as exc:
        return {"skipped": f"dicom_service.deidentify.pixels not available ({type(exc).__name__})"}
    sample = work / "sample"
    manifest = generate(sample, ct_slices=100)
    results: list[dict[str, Any]] = []
    for entry in manifest.files:
        if entry["label"] not in ("us_rgb", "us_jpeg", "sc_rgb", "sc_rle_multiframe"):
            continue
        ds = dcmread(sample / entry["path"])
        ocr_timing(ds)  # warm-up (Tesseract start, model load)
        timing = ocr_timing(ds)
        results.append({
            "label": entry["label"],
            "frames": timing.frames,
            "size": f"{timing.rows}x{timing.columns}",
            "ms_per_frame": round(timing.ms_per_frame, 1),
            "ms_total": round(timing.ms_total, 1),
        })
    shutil.rmtree(sample)
    per_frame = [float(r["ms_per_frame"]) for r in results]
    return {
        "images": results,
        "median_ms_per_frame": round(statistics.median(per_frame), 1) if per_frame else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=300, help="instances (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--repeat", type=int, default=1, help="measured runs per tool")
    parser.add_argument("--tools", default="pydicom,engine_basic,engine,deid,dicognito")
    parser.add_argument("--no-ocr", action="store_true", help="skip figure (e)")
    parser.add_argument("--profiles", type=Path, default=ROOT / "deid_profiles")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    makers: dict[str, Callable[[], Callable[[list[Path], Path], None]]] = {
        "pydicom": lambda: run_pydicom,
        "engine_basic": lambda: make_engine(args.profiles, "basic"),  # the goal
        "engine": lambda: make_engine(args.profiles),
        "deid": make_deid,
        "dicognito": make_dicognito,
    }
    result: dict[str, Any] = {
        "benchmark": "deid",
        "series": {"n": args.n, "size": args.size, "transfer_syntax": "ExplicitVRLittleEndian"},
        "repeat": args.repeat,
        "python": platform.python_version(),
        "pydicom": pydicom_version,
        "cpus": os.cpu_count(),
        "tools": {},
        "errors": {},
    }
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="deid-bench-") as tmp:
        work = Path(tmp)
        paths = write_ct_series(work / "series", n=args.n, size=args.size)
        for name in tools:
            if name not in makers:
                parser.error(f"unknown tool {name!r}")
            try:
                run = makers[name]()
                figures = measure(run, paths, work, args.repeat)
                if hasattr(run, "profile"):
                    figures["profile"] = run.profile
                result["tools"][name] = figures
                print(f"{name:10s} {figures['files_per_s']:8.1f} files/s", flush=True)
            except Exception as exc:  # report and go on: one tool must not hide the others
                result["errors"][name] = type(exc).__name__
                print(f"{name:10s} failed ({type(exc).__name__})", flush=True)
        base = result["tools"].get("pydicom", {}).get("files_per_s")
        if base:
            for figures in result["tools"].values():
                figures["ratio_vs_pydicom"] = round(figures["files_per_s"] / base, 3)
        if not args.no_ocr:
            result["ocr"] = ocr_cost(work)
            median = result["ocr"].get("median_ms_per_frame")
            if median is not None:
                print(f"ocr        {median:8.1f} ms/frame (median over US/SC images)", flush=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, sort_keys=True))
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
