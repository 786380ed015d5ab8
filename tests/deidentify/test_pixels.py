"""Clean Pixel Data option: filter rules, Tesseract text detection, transfer
syntax handling (dicom_service/deidentify/pixels*.py, deid_profiles/pixels.dicom).

Data: the seeded synthetic set of ``sample_data.generate`` (its manifest lists
every planted burned-in text with its box). Tesseract (Debian
``tesseract-ocr``) runs offline.
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from dicom_service.deidentify import (
    Pseudonymiser,
    RecipeError,
    derive_date_shift,
    load_profiles,
    pixels_ocr,
)
from dicom_service.deidentify.pixels import (
    PixelCleaningError,
    PixelReport,
    clean_pixels,
    ocr_timing,
)
from dicom_service.deidentify.pixels_ocr import OcrSettings, _merge_lines
from dicom_service.deidentify.pixels_rules import PixelRules, compile_pixel_rules
from dicom_service.deidentify.profiles import Profile
from dicom_service.deidentify.recipe import parse_recipe
from sample_data.generate import Manifest, generate

PROFILES = Path(__file__).resolve().parents[2] / "deid_profiles"
KEY = b"pixel-test-key-0123456789abcdef!"
OCR_LABEL = "Modality at risk of burned-in text"

# No skip when Tesseract is missing: `./dev` installs tesseract-ocr, and a
# silently skipped privacy test is worse than a failing one.


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("sample")
    return out, generate(out, seed=20261125, ct_slices=100)


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profiles(PROFILES).get("basic-pixels")


def _p() -> Pseudonymiser:
    return Pseudonymiser(key=KEY, pseudonym="ERN-PIXELTEST", date_shift_days=derive_date_shift(KEY))


def _file(sample: tuple[Path, Manifest], label: str) -> tuple[Dataset, dict[str, Any]]:
    root, manifest = sample
    entry = next(f for f in manifest.files if f["label"] == label)
    return pydicom.dcmread(root / entry["path"]), dict(entry)


def _round_trip(ds: Dataset) -> Dataset:
    """Write as the ingest pipeline does (syntax from the file meta) and read back."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


def _frames(ds: Dataset) -> np.ndarray:
    arr = ds.pixel_array
    single = arr.ndim == 2 or (arr.ndim == 3 and int(ds.SamplesPerPixel) == 3)
    return arr[np.newaxis] if single else arr


def _words(image: np.ndarray) -> set[str]:
    """Words Tesseract reads in an 8-bit image (test oracle, independent of the
    confidence filter under test)."""
    gray = pixels_ocr.render_8bit(image, "RGB" if image.ndim == 3 else "MONOCHROME2")
    png = pixels_ocr._png(gray, 1)
    out = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "11"], input=png,
                         capture_output=True, check=True).stdout.decode("utf-8", "replace")
    return {w.strip(".,:;'\"").upper() for w in out.split() if w.strip()}


def _planted_tokens(entry: dict[str, Any]) -> set[str]:
    return {t.strip(",").upper() for b in entry["burned_in_text"] for t in b["text"].split()
            if len(t.strip(",")) >= 3}


# ---------------------------------------------------------------------------
# planted text is blanked


CLEANED = [
    # label, syntax written, lossy flag expected, found by
    ("us_rgb", ExplicitVRLittleEndian, None, "Clean Ultrasound Regions"),
    ("us_jpeg", JPEGLSLossless, "01", "Clean Ultrasound Regions"),
    ("sc_rgb", ExplicitVRLittleEndian, None, "ocr"),
    ("sc_rle_multiframe", RLELossless, None, "ocr"),
]


@pytest.mark.parametrize(("label", "syntax", "lossy", "reason"), CLEANED)
def test_planted_text_is_blanked(sample: tuple[Path, Manifest], profile: Profile, label: str,
                                 syntax: str, lossy: str | None, reason: str) -> None:
    ds, entry = _file(sample, label)
    before = _frames(ds).copy()
    report = profile.apply(ds, _p())
    assert isinstance(report, PixelReport)
    assert report.examined and report.ocr == OCR_LABEL
    assert report.transfer_syntax_out == syntax
    assert {r.reason for r in report.regions} >= {reason}
    back = _round_trip(ds)
    assert back.file_meta.TransferSyntaxUID == syntax
    assert back.BurnedInAnnotation == "NO"
    assert back.get("LossyImageCompression") in ((lossy,) if lossy else (None, "00"))
    assert "113101" in [item.CodeValue for item in back.DeidentificationMethodCodeSequence]
    after = _frames(back)
    assert after.shape == before.shape and after.shape[0] == entry["number_of_frames"]
    fill = np.array(report.fill if after.ndim == 4 else report.fill[0], dtype=after.dtype)
    for planted in entry["burned_in_text"]:
        x0, y0, x1, y1 = planted["box"]
        assert (after[:, y0:y1, x0:x1] == fill).all(), "a planted box is not blanked"
    # the image itself is not wiped out
    assert (after != fill).any(axis=-1 if after.ndim == 4 else None).mean() > 0.3


@pytest.mark.parametrize("label", ["us_rgb", "us_jpeg", "sc_rgb", "sc_rle_multiframe"])
def test_tesseract_finds_no_planted_word_after_cleaning(
        sample: tuple[Path, Manifest], profile: Profile, label: str) -> None:
    ds, entry = _file(sample, label)
    tokens = _planted_tokens(entry)
    seen_before = _words(_frames(ds)[0])
    assert len(tokens & seen_before) >= len(tokens) // 2  # the oracle can read them
    profile.apply(ds, _p())
    for frame in _frames(_round_trip(ds)):
        assert not tokens & _words(frame)


def test_report_holds_no_text(sample: tuple[Path, Manifest], profile: Profile) -> None:
    ds, entry = _file(sample, "sc_rgb")
    report = profile.apply(ds, _p())
    assert report is not None
    dumped = repr(report.to_dict()).upper()
    assert not any(t in dumped for t in _planted_tokens(entry))
    assert all(r.reason == "ocr" and r.frame == 0 for r in report.regions)


def test_ultrasound_keeps_only_its_regions(sample: tuple[Path, Manifest],
                                           profile: Profile) -> None:
    ds, _ = _file(sample, "us_rgb")
    before = _frames(ds).copy()
    region = ds.SequenceOfUltrasoundRegions[0]
    x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
    x1, y1 = int(region.RegionLocationMaxX1) + 1, int(region.RegionLocationMaxY1) + 1
    report = profile.apply(ds, _p())
    assert report is not None
    after = _frames(_round_trip(ds))
    outside = np.ones(after.shape[1:3], dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert (after[:, outside] == 0).all()
    ocr_boxes = [r.box for r in report.regions if r.reason == "ocr"]
    inside = after[:, y0:y1, x0:x1]
    if not ocr_boxes:  # text detection found nothing in the image itself
        assert np.array_equal(inside, before[:, y0:y1, x0:x1])


def test_ct_slices_are_untouched_byte_for_byte(
        sample: tuple[Path, Manifest], profile: Profile, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ocr(*args: object, **kwargs: object) -> list[Any]:
        raise AssertionError("text detection ran on a CT slice")

    monkeypatch.setattr("dicom_service.deidentify.pixels.detect_text", no_ocr)
    root, manifest = sample
    for entry in [f for f in manifest.files if f["label"] in ("ct", "mr")][:8]:
        ds = pydicom.dcmread(root / entry["path"])
        raw = ds[0x7FE00010].value
        report = profile.apply(ds, _p())
        assert report is not None and not report.examined and not report.regions
        assert ds[0x7FE00010].value == raw
        assert "BurnedInAnnotation" not in ds


def test_ct_localizer_goes_through_text_detection(sample: tuple[Path, Manifest],
                                                  profile: Profile) -> None:
    ds, _ = _file(sample, "ct_localizer")
    report = profile.apply(ds, _p())
    assert report is not None and report.ocr == "CT or MR localizer"
    assert ds.BurnedInAnnotation == "NO"


def test_xa_frames_without_text_stay_unchanged(sample: tuple[Path, Manifest],
                                               profile: Profile) -> None:
    ds, _ = _file(sample, "xa_multiframe")
    raw = ds.PixelData
    report = profile.apply(ds, _p())
    assert report is not None and report.examined and report.frames == 12
    assert not report.regions  # noise read as letters is not blanked
    assert ds.PixelData == raw


def test_profile_without_the_option_does_not_clean(sample: tuple[Path, Manifest]) -> None:
    ds, _ = _file(sample, "us_rgb")
    raw = ds.PixelData
    report = load_profiles(PROFILES).get("basic").apply(ds, _p())
    assert report is None
    assert ds.PixelData == raw
    assert "113101" not in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]


# ---------------------------------------------------------------------------
# transfer syntaxes: write-read round trip with a fixed box


BOX_RULES = compile_pixel_rules([parse_recipe(
    "FORMAT dicom\n%filter graylist\nLABEL test box\n  present Modality\n"
    "  coordinates 4,6,60,30\n", "box.dicom")])


def _to(syntax: str) -> Callable[[Dataset], Dataset]:
    def convert(ds: Dataset) -> Dataset:
        if syntax in (ExplicitVRBigEndian, ImplicitVRLittleEndian,
                      DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian):
            ds.file_meta.TransferSyntaxUID = syntax
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            buf.seek(0)
            return pydicom.dcmread(buf)
        ds.compress(syntax, generate_instance_uid=False)
        return _round_trip(ds)
    return convert


SYNTAX_CASES = [
    # label, conversion of the source, syntax after cleaning
    ("cr_jpegls", None, JPEGLSLossless),
    ("dx_j2k", None, JPEG2000Lossless),
    ("sc_rle_multiframe", None, RLELossless),
    ("mr", None, ImplicitVRLittleEndian),
    ("mr_deflated", None, DeflatedExplicitVRLittleEndian),
    ("ct_localizer", None, ExplicitVRLittleEndian),
    ("ct_localizer", ExplicitVRBigEndian, ExplicitVRBigEndian),
    ("us_rgb", RLELossless, RLELossless),
    ("us_rgb", JPEGLSLossless, JPEGLSLossless),
    ("us_jpeg", None, JPEGLSLossless),
]


@pytest.mark.parametrize(("label", "convert", "expected"), SYNTAX_CASES)
def test_transfer_syntax_round_trip(sample: tuple[Path, Manifest], label: str,
                                    convert: str | None, expected: str) -> None:
    ds, _ = _file(sample, label)
    if convert is not None:
        ds = _to(convert)(ds)
    lossless = ds.file_meta.TransferSyntaxUID != JPEGBaseline8Bit
    before = _frames(ds).copy()
    report = clean_pixels(ds, BOX_RULES)
    assert report.transfer_syntax_out == expected
    assert ds.file_meta.TransferSyntaxUID == expected
    back = _round_trip(ds)
    assert back.file_meta.TransferSyntaxUID == expected
    after = _frames(back)
    fill = np.array(report.fill if after.ndim == 4 else report.fill[0], dtype=after.dtype)
    assert (after[:, 6:30, 4:60] == fill).all()
    if lossless:  # nothing else changed
        mask = np.ones(after.shape[1:3], dtype=bool)
        mask[6:30, 4:60] = False
        assert np.array_equal(after[:, mask], before[:, mask])
        assert back.get("LossyImageCompression") in (None, "00")
    else:
        assert back.LossyImageCompression == "01"


def test_monochrome1_fill_is_black(sample: tuple[Path, Manifest]) -> None:
    ds, _ = _file(sample, "cr_jpegls")
    report = clean_pixels(ds, BOX_RULES)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert report.fill == ((1 << int(ds.BitsStored)) - 1,)


def test_encoder_failure_falls_back_to_explicit_little_endian(
        sample: tuple[Path, Manifest], monkeypatch: pytest.MonkeyPatch) -> None:
    ds, _ = _file(sample, "cr_jpegls")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no encoder")

    monkeypatch.setattr(Dataset, "compress", refuse)
    report = clean_pixels(ds, BOX_RULES)
    assert report.transfer_syntax_out == ExplicitVRLittleEndian
    back = _round_trip(ds)
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (_frames(back)[:, 6:30, 4:60] == report.fill[0]).all()


# ---------------------------------------------------------------------------
# what cannot be cleaned is refused


def _broken(sample: tuple[Path, Manifest], syntax: str) -> Dataset:
    ds, _ = _file(sample, "us_rgb")
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream" * 8])
    ds["PixelData"].VR = "OB"
    return ds


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless,
                                    "1.2.840.10008.1.2.4.100"])  # MPEG2: no decoder
def test_undecodable_instance_raises(sample: tuple[Path, Manifest], profile: Profile,
                                     syntax: str) -> None:
    with pytest.raises(PixelCleaningError, match="decod") as info:
        profile.apply(_broken(sample, syntax), _p())
    assert "ODEGARD" not in str(info.value).upper()


def test_missing_tesseract_raises(sample: tuple[Path, Manifest], profile: Profile,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixels_ocr, "TESSERACT", "/nonexistent/tesseract")
    ds, _ = _file(sample, "sc_rgb")
    with pytest.raises(PixelCleaningError, match="tesseract is not installed"):
        profile.apply(ds, _p())


# ---------------------------------------------------------------------------
# rules


def _rules(text: str) -> PixelRules:
    return compile_pixel_rules([parse_recipe("FORMAT dicom\n" + text, "t.dicom")])


def _ds(**values: Any) -> Dataset:
    ds = Dataset()
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


CRITERIA = [
    ("contains Modality US", {"Modality": "US"}, True),
    ("contains Modality ^U", {"Modality": "CT"}, False),
    ("contains ImageType LOCAL", {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, True),
    ("contains ImageType PRIMARY\\\\LOCAL", {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
     True),
    ("equals Rows 480", {"Rows": 480}, True),
    ("equals Rows 48", {"Rows": 480}, False),
    ("notequals Rows 48", {"Rows": 480}, True),
    ("missing Manufacturer", {}, True),
    ("present Manufacturer", {"Manufacturer": ""}, True),
    ("empty Manufacturer", {"Manufacturer": ""}, True),
    ("empty Manufacturer", {}, False),
    ("notcontains Manufacturer GE", {"Manufacturer": "Siemens"}, True),
    ("contains Modality CT + contains Manufacturer GE", {"Modality": "CT"}, False),
    ("contains Modality CT || contains Manufacturer GE", {"Modality": "MR",
                                                          "Manufacturer": "GE"}, True),
    ("contains Modality CT\n  + contains Manufacturer GE", {"Modality": "CT",
                                                            "Manufacturer": "ge medical"}, True),
    ("contains Modality CT\n  || contains Manufacturer GE", {"Modality": "US",
                                                             "Manufacturer": "GE"}, True),
    ("contains Modality CT\n  + contains Manufacturer GE", {"Modality": "US",
                                                            "Manufacturer": "GE"}, False),
]


@pytest.mark.parametrize(("criteria", "values", "expected"), CRITERIA)
def test_criteria(criteria: str, values: dict[str, Any], expected: bool) -> None:
    rules = _rules(f"%filter ocr\nLABEL t\n  {criteria}\n")
    assert (rules.decide(_ds(**values)).ocr == "t") is expected


def test_file_meta_fields_are_read_from_the_file_meta() -> None:
    rules = _rules("%filter graylist\nLABEL MINDRAY\n  contains ImplementationVersionName "
                   "MINDRAY\n  ctpcoordinates 0,0,100,10\n")
    ds = _ds(Modality="US")
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.ImplementationVersionName = "MINDRAY_1"
    assert rules.decide(ds).blank == (("MINDRAY", (0, 0, 100, 10)),)


@pytest.mark.parametrize(("text", "message"), [
    ("%filter whitelist\nLABEL a\n  contains Modality US\n", "not used for pixel cleaning"),
    ("%filter graylist\nLABEL a\n  contains Modality US\n", "needs coordinates"),
    ("%filter ocr\nLABEL a\n  contains Modality US\n  coordinates 0,0,1,1\n", "no coordinates"),
    ("%filter graylist\nLABEL a\n  keepcoordinates from:PixelSpacing\n", "not supported"),
    ("%filter ocr\nLABEL a\n  contains startswith:Pat x\n", "tag or keyword"),
])
def test_bad_rules_are_refused_at_load(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        _rules(text)


def test_repository_recipe_compiles_and_deid_reads_it() -> None:
    rules = _rules((PROFILES / "pixels.dicom").read_text("utf-8").split("\n", 1)[1])
    labels = {g.label for g in rules.groups}
    assert {"Clean Ultrasound Regions", OCR_LABEL, "CT or MR localizer"} <= labels
    assert len(rules.groups) > 90  # the vendor rules copied from deid


def test_vendor_rule_blanks_its_box() -> None:
    rules = _rules((PROFILES / "pixels.dicom").read_text("utf-8").split("\n", 1)[1])
    ds = _ds(Modality="US", Manufacturer="GE Healthcare", ManufacturerModelName="LOGIQ9")
    decision = rules.decide(ds)
    assert ("Logiq US (LOGIQ9)", (0, 0, 640, 30)) in decision.blank
    assert decision.ocr == OCR_LABEL


@pytest.mark.parametrize(("boxes", "merged"), [
    ([(0, 0, 10, 10), (12, 0, 30, 10)], [(0, 0, 30, 10)]),        # words of one line
    ([(0, 0, 10, 10), (60, 0, 70, 10)], [(0, 0, 10, 10), (60, 0, 70, 10)]),  # far apart
    ([(0, 0, 10, 10), (0, 20, 10, 30)], [(0, 0, 10, 10), (0, 20, 10, 30)]),  # two lines
    ([(0, 0, 10, 10), (5, 5, 15, 15)], [(0, 0, 15, 15)]),          # overlapping
])
def test_word_boxes_merge_along_a_line(boxes: list[tuple[int, int, int, int]],
                                       merged: list[tuple[int, int, int, int]]) -> None:
    assert _merge_lines(boxes, OcrSettings().line_gap) == merged


def test_ocr_timing_reports_per_frame_cost(sample: tuple[Path, Manifest]) -> None:
    ds, _ = _file(sample, "sc_rle_multiframe")
    raw = ds.PixelData
    timing = ocr_timing(ds)
    assert timing.frames == 8 and timing.ms_per_frame > 0 and timing.boxes >= 8
    assert ds.PixelData == raw
    assert re.fullmatch(r"OT", timing.modality)


# ---------------------------------------------------------------------------
# the ingest pipeline writes and indexes the syntax the cleaning chose


def _pipeline(tmp_path: Path, profile: Profile, entry: dict[str, Any]) -> tuple[Any, Any, Any]:
    from dicom_service.care.enrolment import CareService
    from dicom_service.db.session import Database
    from dicom_service.ingest.pipeline import IngestPipeline, Sender
    from dicom_service.storage.filesystem import FilesystemStore

    db = Database(f"sqlite:///{tmp_path / 'index.sqlite'}")
    db.migrate()
    store = FilesystemStore(tmp_path / "store")
    care = CareService(db, store, KEY)
    centre = care.add_centre("Centre P", actor="test")
    care.enrol("Centre P", entry["patient_id"], entry["issuer"], actor="test")
    return IngestPipeline(db, store, care, lambda: profile), store, Sender(centre, "peer:TEST")


def _as_received(ds: Dataset) -> Dataset:
    """As pynetdicom hands a C-STORE data set over: no file meta."""
    del ds.file_meta
    return ds


def test_pipeline_stores_and_indexes_the_new_syntax(
        sample: tuple[Path, Manifest], profile: Profile, tmp_path: Path) -> None:
    from sqlalchemy import text

    from dicom_service.storage.base import InstanceKey

    ds, entry = _file(sample, "us_jpeg")
    pipeline, store, sender = _pipeline(tmp_path, profile, entry)
    result = pipeline.ingest(_as_received(ds), JPEGBaseline8Bit, sender)
    key = InstanceKey(result.study_uid, result.series_uid, result.sop_uid)
    stored = pydicom.dcmread(io.BytesIO(store.get(key)))
    assert stored.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert stored.LossyImageCompression == "01" and stored.BurnedInAnnotation == "NO"
    frames = _frames(stored)
    for planted in entry["burned_in_text"]:
        x0, y0, x1, y1 = planted["box"]
        assert (frames[:, y0:y1, x0:x1] == 0).all()
    with pipeline.db.engine.connect() as conn:
        indexed = conn.execute(text("SELECT transfer_syntax_uid FROM instances")).scalars().all()
    assert indexed == [JPEGLSLossless]


def test_pipeline_refuses_what_cannot_be_cleaned(
        sample: tuple[Path, Manifest], profile: Profile, tmp_path: Path) -> None:
    from dicom_service.errors import IngestRefused, Refusal

    _, entry = _file(sample, "us_rgb")
    pipeline, _, sender = _pipeline(tmp_path, profile, entry)
    broken = _as_received(_broken(sample, JPEG2000Lossless))
    with pytest.raises(IngestRefused) as info:
        pipeline.ingest(broken, JPEG2000Lossless, sender)
    assert info.value.reason is Refusal.DEIDENTIFICATION_FAILED
    assert not list((tmp_path / "store").rglob("*.dcm"))


def test_ybr_full_is_blanked_in_its_own_colour_space(sample: tuple[Path, Manifest]) -> None:
    from pydicom.pixels import convert_color_space

    ds, _ = _file(sample, "us_rgb")
    ybr = convert_color_space(ds.pixel_array, "RGB", "YBR_FULL")
    ds.PixelData = np.ascontiguousarray(ybr).tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    report = clean_pixels(ds, BOX_RULES)
    assert report.fill == (0, 128, 128)
    back = _round_trip(ds)
    assert back.PhotometricInterpretation == "YBR_FULL"
    stored = np.frombuffer(back.PixelData, dtype=np.uint8).reshape(ybr.shape)
    assert (stored[6:30, 4:60] == (0, 128, 128)).all()
    mask = np.ones(ybr.shape[:2], dtype=bool)
    mask[6:30, 4:60] = False
    assert np.array_equal(stored[mask], ybr[mask])


OCR_ALL = compile_pixel_rules([parse_recipe(
    "FORMAT dicom\n%filter ocr\nLABEL every image\n  present Modality\n", "ocr.dicom")])


def _burn(arr: np.ndarray, text: str, xy: tuple[int, int], value: int) -> tuple[int, ...]:
    """Draw ``text`` into a 2-D array at ``value``; return its ink box (x0, y0, x1, y1)."""
    from PIL import Image, ImageDraw, ImageFont

    mask = Image.new("L", (arr.shape[1], arr.shape[0]), 0)
    ImageDraw.Draw(mask).text(xy, text, fill=255, font=ImageFont.load_default(size=18))
    ink = np.asarray(mask) > 127
    arr[ink] = value
    ys, xs = np.nonzero(ink)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_ocr_on_16_bit_monochrome1(sample: tuple[Path, Manifest]) -> None:
    """12 bits stored, MONOCHROME1 (low values display white), JPEG-LS."""
    ds, _ = _file(sample, "cr_jpegls")
    arr = ds.pixel_array.copy()
    box = _burn(arr, "ZORBLATT 4471", (20, 20), 0)
    ds.compress(JPEGLSLossless, arr, generate_instance_uid=False)
    report = clean_pixels(ds, OCR_ALL)
    assert report.ocr == "every image" and report.regions
    after = _frames(_round_trip(ds))[0]
    x0, y0, x1, y1 = box
    assert (after[y0:y1, x0:x1] == report.fill[0]).all()
    assert report.fill == ((1 << int(ds.BitsStored)) - 1,)


def test_text_on_a_ct_localizer_is_found_by_rule(sample: tuple[Path, Manifest],
                                                 profile: Profile) -> None:
    """Signed 16-bit MONOCHROME2; the localizer goes to text detection by rule."""
    ds, _ = _file(sample, "ct_localizer")
    arr = ds.pixel_array.copy()
    box = _burn(arr, "QUILLFEATHER Z", (30, 470), int(arr.max()))
    ds.PixelData = arr.tobytes()
    report = profile.apply(ds, _p())
    assert report is not None and report.ocr == "CT or MR localizer"
    after = _frames(_round_trip(ds))[0]
    x0, y0, x1, y1 = box
    assert (after[y0:y1, x0:x1] == report.fill[0]).all()
    assert report.fill == (-(1 << (int(ds.BitsStored) - 1)),)


def test_identical_frames_are_read_once_and_all_blanked(
        sample: tuple[Path, Manifest], monkeypatch: pytest.MonkeyPatch) -> None:
    from dicom_service.deidentify import pixels

    ds, entry = _file(sample, "sc_rle_multiframe")
    frames = ds.pixel_array
    still = np.stack([frames[0], frames[0], frames[1], frames[0]])
    ds.PixelData = still.tobytes()
    ds.NumberOfFrames = 4
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    calls: list[int] = []
    real = pixels.detect_text

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pixels, "detect_text", counting)
    report = clean_pixels(ds, OCR_ALL)
    assert len(calls) == 2
    assert {r.frame for r in report.regions} == {0, 1, 2, 3}
    after = _frames(_round_trip(ds))
    for planted in entry["burned_in_text"]:
        x0, y0, x1, y1 = planted["box"]
        assert (after[:, y0:y1, x0:x1] == 0).all()
