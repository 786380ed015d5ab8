"""The rendering library against a reference rendering computed here.

The reference is a plain numpy transcription of the formulas of PS3.3
Section C.11 (Modality LUT, VOI LUT with LINEAR / LINEAR_EXACT / SIGMOID,
MONOCHROME1 inversion, palette colour), fed with pydicom's own decoding of the
whole pixel data (``Dataset.pixel_array``); it never calls
``dicom_service.render``. PNG output must match within 1, JPEG after decoding
with a mean absolute difference below 3.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_service.dicom.image_tags import IMAGE_JSON_KEYS
from dicom_service.render import (
    BadRenderParameter,
    FrameNotFound,
    MediaType,
    NotRenderable,
    Renderer,
    RenderParams,
    Viewport,
    VoiFunction,
    Window,
)
from dicom_service.render.decode import read_header
from sample_data.generate import Manifest

# ---------------------------------------------------------------------------
# the reference rendering (PS3.3 C.11), independent of the code under test


def ref_window(x: np.ndarray, c: float, w: float, function: str = "LINEAR") -> np.ndarray:
    x = x.astype(np.float64)
    if function == "SIGMOID":  # C.11.2.1.3.1
        with np.errstate(over="ignore"):  # exp overflows to inf: y = 0, as it should
            return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":  # C.11.2.1.3.2
        y = ((x - c) / w + 0.5) * 255.0
        y[x <= c - w / 2] = 0.0
        y[x > c + w / 2] = 255.0
        return y
    # LINEAR, C.11.2.1.2.1
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0 if w > 1 else np.zeros_like(x)
    y[x <= c - 0.5 - (w - 1) / 2] = 0.0
    y[x > c - 0.5 + (w - 1) / 2] = 255.0
    return y


def ref_grey(ds: Dataset, frame: int = 0, window: tuple[float, float, str] | None = None
             ) -> np.ndarray:
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[frame]
    values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(
        ds.get("RescaleIntercept", 0) or 0)
    if window is None and "WindowCenter" in ds:
        wc, ww = ds.WindowCenter, ds.WindowWidth
        wc = wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc
        ww = ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww
        window = (float(wc), float(ww), str(ds.get("VOILUTFunction", "LINEAR")))
    if window is None:  # no window: stretch the frame's range
        lo, hi = values.min(), values.max()
        y = (values - lo) / (hi - lo) * 255.0
    else:
        y = ref_window(values, *window)
    out = np.rint(np.clip(y, 0, 255)).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
    return out


def decode_image(content: bytes) -> np.ndarray:
    picture = Image.open(io.BytesIO(content))
    if picture.mode == "P":
        picture = picture.convert("RGB")
    return np.asarray(picture)


def assert_close(content: bytes, media: MediaType, expected: np.ndarray) -> None:
    got = decode_image(content).astype(np.int16)
    if got.ndim == 3 and expected.ndim == 2:
        got = got[:, :, 0]
    assert got.shape == expected.shape
    diff = np.abs(got - expected.astype(np.int16))
    if media is MediaType.JPEG:
        assert diff.mean() < 3.0, diff.mean()
    else:
        assert diff.max() <= 1, (diff.max(), diff.mean())


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def files(sample_set: tuple[Path, Manifest]) -> dict[str, Path]:
    directory, manifest = sample_set
    found: dict[str, Path] = {}
    for entry in manifest.files:
        found.setdefault(entry["label"], directory / entry["path"])
    return found


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(cache_bytes=0)


IMAGE_LABELS = ["ct_localizer", "ct", "sc_rgb", "mr", "us_rgb", "us_jpeg", "xa_multiframe",
                "cr_jpegls", "dx_j2k", "mr_deflated", "sc_rle_multiframe"]


# ---------------------------------------------------------------------------
# every transfer syntax of the sample set


@pytest.mark.parametrize("label", IMAGE_LABELS)
def test_every_sample_renders_like_the_reference(files: dict[str, Path], renderer: Renderer,
                                                  label: str) -> None:
    ds = pydicom.dcmread(files[label])
    out = renderer.render(files[label], 0, RenderParams(media_type=MediaType.PNG))
    assert out.media_type is MediaType.PNG
    if ds.SamplesPerPixel == 3:
        expected = ds.pixel_array  # pydicom converts YBR to RGB
        if label == "us_jpeg":  # lossy: pydicom and we both decode with libjpeg
            assert np.abs(decode_image(out.content).astype(int) - expected).max() <= 1
            return
        assert_close(out.content, MediaType.PNG, expected)
    else:
        assert_close(out.content, MediaType.PNG, ref_grey(ds))


def test_sr_is_not_renderable(sample_set: tuple[Path, Manifest], renderer: Renderer) -> None:
    directory, manifest = sample_set
    sr = next(directory / f["path"] for f in manifest.files if f["label"] == "sr")
    with pytest.raises(NotRenderable, match="no image pixel data"):
        renderer.render(sr, 0, RenderParams())


# ---------------------------------------------------------------------------
# CT windows


@pytest.mark.parametrize("media", [MediaType.PNG, MediaType.JPEG])
def test_ct_stored_window_is_the_default(files: dict[str, Path], renderer: Renderer,
                                         media: MediaType) -> None:
    ds = pydicom.dcmread(files["ct"])
    out = renderer.render(files["ct"], 0, RenderParams(media_type=media))
    assert_close(out.content, media, ref_grey(ds, window=(40.0, 400.0, "LINEAR")))


@pytest.mark.parametrize(
    ("window", "function"),
    [((-600.0, 1500.0), "LINEAR"), ((40.0, 80.0), "LINEAR_EXACT"), ((40.0, 400.0), "SIGMOID"),
     ((0.0, 1.0), "LINEAR"), ((300.0, 2000.0), "SIGMOID")],
)
@pytest.mark.parametrize("media", [MediaType.PNG, MediaType.JPEG])
def test_ct_explicit_window(files: dict[str, Path], renderer: Renderer,
                            window: tuple[float, float], function: str,
                            media: MediaType) -> None:
    ds = pydicom.dcmread(files["ct"])
    params = RenderParams(media_type=media,
                          window=Window(window[0], window[1], VoiFunction(function)))
    out = renderer.render(files["ct"], 0, params)
    assert_close(out.content, media, ref_grey(ds, window=(*window, function)))


def test_voi_lut_function_in_the_file_is_used(files: dict[str, Path], renderer: Renderer,
                                              tmp_path: Path) -> None:
    ds = pydicom.dcmread(files["ct"])
    ds.VOILUTFunction = "SIGMOID"
    path = tmp_path / "sigmoid.dcm"
    ds.save_as(path)
    out = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG))
    assert_close(out.content, MediaType.PNG, ref_grey(ds, window=(40.0, 400.0, "SIGMOID")))


def test_modality_and_voi_lut_sequences(files: dict[str, Path], renderer: Renderer,
                                        tmp_path: Path) -> None:
    """Modality LUT Sequence (stored -> doubled) and VOI LUT Sequence (a ramp)."""
    ds = pydicom.dcmread(files["mr"])  # unsigned 12-bit
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    modality = Dataset()
    modality.LUTDescriptor = [4096, 0, 16]
    modality.ModalityLUTType = "US"
    modality_table = (np.arange(4096) * 2).astype(np.uint16)
    modality.LUTData = modality_table.astype("<u2").tobytes()
    ds.ModalityLUTSequence = [modality]
    voi = Dataset()
    voi.LUTDescriptor = [2048, 1000, 8]  # inputs 1000..3047 -> 0..255
    voi_table = np.linspace(0, 255, 2048).round().astype(np.uint16)
    voi.LUTData = voi_table.astype("<u2").tobytes()
    ds.VOILUTSequence = [voi]
    path = tmp_path / "luts.dcm"
    ds.save_as(path)  # implicit VR, as the MR was stored
    stored = pydicom.dcmread(path).pixel_array.astype(np.int64)
    modality_out = modality_table[np.clip(stored, 0, 4095)].astype(np.int64)
    expected = voi_table[np.clip(modality_out - 1000, 0, 2047)].astype(np.uint8)
    out = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG))
    assert_close(out.content, MediaType.PNG, expected)


def test_rescale_slope_and_intercept(files: dict[str, Path], renderer: Renderer,
                                     tmp_path: Path) -> None:
    ds = pydicom.dcmread(files["ct"])
    ds.RescaleSlope = "0.5"
    ds.RescaleIntercept = "-100"
    path = tmp_path / "slope.dcm"
    ds.save_as(path)
    out = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG))
    assert_close(out.content, MediaType.PNG, ref_grey(ds, window=(40.0, 400.0, "LINEAR")))


# ---------------------------------------------------------------------------
# MONOCHROME1, colour, palette, multi-frame


@pytest.mark.parametrize("media", [MediaType.PNG, MediaType.JPEG])
def test_monochrome1_is_inverted(files: dict[str, Path], renderer: Renderer,
                                 media: MediaType) -> None:
    ds = pydicom.dcmread(files["cr_jpegls"])
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    out = renderer.render(files["cr_jpegls"], 0, RenderParams(media_type=media))
    expected = ref_grey(ds)
    assert_close(out.content, media, expected)
    # bright in the stored data (high values) is dark on screen
    stored = ds.pixel_array
    assert expected[stored > 3000].mean() < expected[stored < 1500].mean()


@pytest.mark.parametrize("media", [MediaType.PNG, MediaType.JPEG, MediaType.GIF])
def test_rgb(files: dict[str, Path], renderer: Renderer, media: MediaType) -> None:
    ds = pydicom.dcmread(files["sc_rgb"])
    out = renderer.render(files["sc_rgb"], 0, RenderParams(media_type=media))
    got = decode_image(out.content).astype(np.int16)
    diff = np.abs(got - ds.pixel_array.astype(np.int16))
    if media is MediaType.PNG:
        assert diff.max() == 0
    else:  # JPEG 4:2:2 and GIF's 256-colour palette are lossy
        assert diff.mean() < 6.0, diff.mean()


def test_rgb_planar_configuration_1(files: dict[str, Path], renderer: Renderer,
                                    tmp_path: Path) -> None:
    ds = pydicom.dcmread(files["us_rgb"])
    rgb = ds.pixel_array
    ds.PlanarConfiguration = 1
    ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    path = tmp_path / "planar.dcm"
    ds.save_as(path)
    out = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG))
    assert np.array_equal(decode_image(out.content), rgb)


def palette_instance(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An 8-bit PALETTE COLOR secondary capture with a 16-bit palette; returns the
    path and the expected RGB."""
    rng = np.random.default_rng(20261125)
    indices = rng.integers(0, 256, size=(64, 96), dtype=np.uint8)
    indices[:8, :8] = 0  # first palette entry used
    red = (np.arange(256) * 257).astype(np.uint16)
    green = ((255 - np.arange(256)) * 257).astype(np.uint16)
    blue = rng.integers(0, 65536, size=256, dtype=np.uint16)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.1234"
    ds.StudyInstanceUID = "2.25.1"
    ds.SeriesInstanceUID = "2.25.2"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = indices.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for colour, table in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", table.astype("<u2").tobytes())
    ds.PixelData = indices.tobytes()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "palette.dcm"
    ds.save_as(path, enforce_file_format=True)
    rgb = np.stack([red[indices], green[indices], blue[indices]], axis=-1)
    expected = np.rint(rgb / 257.0).astype(np.uint8)
    return path, expected


def test_palette_colour(renderer: Renderer, tmp_path: Path) -> None:
    path, expected = palette_instance(tmp_path)
    out = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG))
    assert_close(out.content, MediaType.PNG, expected)
    jpeg = renderer.render(path, 0, RenderParams(media_type=MediaType.JPEG, quality=95))
    assert decode_image(jpeg.content).shape == expected.shape


@pytest.mark.parametrize(("label", "frame"), [("xa_multiframe", 0), ("xa_multiframe", 5),
                                              ("xa_multiframe", 11), ("sc_rle_multiframe", 7)])
@pytest.mark.parametrize("media", [MediaType.PNG, MediaType.JPEG])
def test_multiframe(files: dict[str, Path], renderer: Renderer, label: str, frame: int,
                    media: MediaType) -> None:
    ds = pydicom.dcmread(files[label])
    # quality 95: these frames are pure noise, the worst case for JPEG
    out = renderer.render(files[label], frame, RenderParams(media_type=media, quality=95))
    assert_close(out.content, media, ref_grey(ds, frame))


def test_frames_differ_and_out_of_range_is_refused(files: dict[str, Path],
                                                   renderer: Renderer) -> None:
    params = RenderParams(media_type=MediaType.PNG)
    first = renderer.render(files["xa_multiframe"], 0, params).content
    last = renderer.render(files["xa_multiframe"], 11, params).content
    assert first != last
    with pytest.raises(FrameNotFound, match="Frame 13 does not exist"):
        renderer.render(files["xa_multiframe"], 12, params)


# ---------------------------------------------------------------------------
# viewport, formats, quality


def test_viewport_keeps_the_aspect_ratio(files: dict[str, Path], renderer: Renderer) -> None:
    out = renderer.render(files["sc_rgb"], 0, RenderParams(viewport=Viewport(320, 320)))
    assert Image.open(io.BytesIO(out.content)).size == (320, 240)  # 640x480 source
    out = renderer.render(files["ct"], 0, RenderParams(viewport=Viewport(100, 50)))
    assert Image.open(io.BytesIO(out.content)).size == (50, 50)


def test_viewport_source_region(files: dict[str, Path], renderer: Renderer) -> None:
    from dicom_service.render.params import Region

    ds = pydicom.dcmread(files["ct"])
    params = RenderParams(media_type=MediaType.PNG,
                          viewport=Viewport(64, 32, Region(100, 200, 64, 32)))
    out = renderer.render(files["ct"], 0, params)
    expected = ref_grey(ds, window=(40.0, 400.0, "LINEAR"))[200:232, 100:164]
    assert_close(out.content, MediaType.PNG, expected)


def test_formats_have_their_signatures(files: dict[str, Path], renderer: Renderer) -> None:
    signatures = {MediaType.JPEG: b"\xff\xd8\xff", MediaType.PNG: b"\x89PNG",
                  MediaType.GIF: b"GIF8"}
    for media, magic in signatures.items():
        assert renderer.render(files["ct"], 0, RenderParams(media_type=media)).content.startswith(
            magic)


def test_quality_changes_jpeg_size(files: dict[str, Path], renderer: Renderer) -> None:
    low = renderer.render(files["ct"], 0, RenderParams(quality=10)).content
    high = renderer.render(files["ct"], 0, RenderParams(quality=95)).content
    assert len(low) < len(high)


# ---------------------------------------------------------------------------
# fast path, cache


def test_index_offsets_give_the_same_frame(files: dict[str, Path], tmp_path: Path) -> None:
    parsed = read_header(files["xa_multiframe"])
    assert parsed.native and parsed.pixel_offset is not None
    # a fresh renderer told the offset by "the index" reads the same pixels
    via_index = Renderer(cache_bytes=0).render(
        files["xa_multiframe"], 3, RenderParams(media_type=MediaType.PNG),
        offset=parsed.pixel_offset, length=parsed.pixel_length)
    via_parse = Renderer(cache_bytes=0).render(
        files["xa_multiframe"], 3, RenderParams(media_type=MediaType.PNG))
    assert via_index.content == via_parse.content


def test_high_bits_above_bits_stored_are_ignored(files: dict[str, Path], renderer: Renderer,
                                                 tmp_path: Path) -> None:
    ds = pydicom.dcmread(files["mr"])  # 12 bits stored in 16
    clean = ds.pixel_array.copy()
    noisy = copy.deepcopy(ds)
    noisy.PixelData = (clean | 0xF000).astype("<u2").tobytes()
    path = tmp_path / "overlay_bits.dcm"
    noisy.save_as(path)
    out = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG))
    assert_close(out.content, MediaType.PNG, ref_grey(ds))


def test_cache_answers_repeats_within_its_budget(files: dict[str, Path]) -> None:
    renderer = Renderer(cache_bytes=400_000)
    first = renderer.render(files["ct"], 0, RenderParams())
    again = renderer.render(files["ct"], 0, RenderParams())
    assert again.content == first.content and renderer.cache.hits == 1
    renderer.render(files["ct"], 0, RenderParams(window=Window(0, 100)))
    assert renderer.cache.misses == 2
    for i in range(20):
        renderer.render(files["ct"], 0, RenderParams(quality=50 + i))
    assert renderer.cache.size <= 400_000


def test_replaced_file_is_not_answered_from_the_cache(files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    renderer = Renderer()
    path = tmp_path / "x.dcm"
    ds = pydicom.dcmread(files["ct"])
    ds.save_as(path)
    before = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG)).content
    ds.WindowCenter, ds.WindowWidth = "-600", "1500"
    ds.WindowCenterWidthExplanation = "LUNG"
    ds.save_as(path)
    after = renderer.render(path, 0, RenderParams(media_type=MediaType.PNG)).content
    assert before != after


def test_bad_stored_window_falls_back(files: dict[str, Path], renderer: Renderer,
                                      tmp_path: Path) -> None:
    ds = pydicom.dcmread(files["xa_multiframe"])
    ds.WindowCenter, ds.WindowWidth = "100", "0"  # width 0 is illegal for LINEAR
    path = tmp_path / "badwindow.dcm"
    ds.save_as(path)
    out = renderer.render(path, 2, RenderParams(media_type=MediaType.PNG))
    del ds.WindowCenter, ds.WindowWidth
    assert_close(out.content, MediaType.PNG, ref_grey(ds, 2))


def test_window_rules() -> None:
    with pytest.raises(BadRenderParameter, match="width must be >= 1 for LINEAR"):
        Window(0, 0.5)
    with pytest.raises(BadRenderParameter, match="width must be > 0 for SIGMOID"):
        Window(0, 0, VoiFunction.SIGMOID)
    assert Window(0, 0.5, VoiFunction.LINEAR_EXACT).width == 0.5


@pytest.mark.parametrize("label", ["ct", "mr", "xa_multiframe", "sc_rgb", "us_rgb"])
def test_header_from_the_index_json_matches_the_file(files: dict[str, Path], label: str) -> None:
    """The index's DICOM JSON (PS3.18 F.2) gives the same header as parsing the file."""
    from dicom_service.render.decode import header_from_json

    parsed = read_header(files[label])
    assert parsed.pixel_offset is not None and parsed.pixel_length is not None
    ds = pydicom.dcmread(files[label], stop_before_pixels=True)
    document = ds.to_json_dict()
    from_json = header_from_json(document, parsed.transfer_syntax,
                                 parsed.pixel_offset, parsed.pixel_length)
    assert from_json == parsed
    # the image attributes the index keeps apart (instances.image_json) suffice
    image = {k: v for k, v in document.items() if k in IMAGE_JSON_KEYS}
    assert len(image) < len(document)
    assert header_from_json(image, parsed.transfer_syntax, parsed.pixel_offset,
                            parsed.pixel_length) == parsed


def test_header_from_json_defers_to_the_file_for_luts_and_palettes() -> None:
    from dicom_service.render.decode import header_from_json

    rows = {"00280010": {"vr": "US", "Value": [8]}}
    assert header_from_json({**rows, "00283010": {"vr": "SQ", "Value": [{}]}}, "1.2", 0, 1) is None
    palette = {**rows, "00280004": {"vr": "CS", "Value": ["PALETTE COLOR"]}}
    assert header_from_json(palette, "1.2", 0, 1) is None
    assert header_from_json({**rows, "00281053": {"vr": "DS", "Value": ["x"]}}, "1.2", 0, 1) is None


@pytest.mark.parametrize("cut", [None, 600, 2000, 5000])
def test_a_broken_file_is_refused_without_quoting_it(files: dict[str, Path], renderer: Renderer,
                                                     tmp_path: Path, cut: int | None) -> None:
    path = tmp_path / "broken.dcm"
    if cut is None:
        path.write_bytes(b"\0" * 128 + b"DICM" + b"Zorblatt Fernsby" * 4)
    else:  # a truncated header (or pixel data)
        path.write_bytes(files["mr"].read_bytes()[:cut])
    with pytest.raises(NotRenderable) as info:
        renderer.render(path, 0, RenderParams())
    assert "Zorblatt" not in str(info.value) and "Quillfeather" not in str(info.value)


def test_palette_headers_are_not_kept_when_large(tmp_path: Path) -> None:
    from dicom_service.render.renderer import _cacheable

    path, _ = palette_instance(tmp_path)
    assert _cacheable(read_header(path))  # 256 entries


def test_linear_windows_take_the_float_path_and_agree_with_the_table() -> None:
    """A linear window over Rescale Slope/Intercept is computed as a clipped
    affine map (``lut._apply_linear``), not through the 64K-entry table; both
    must give the same display values but for rounding ties (at most 1, rarely)."""
    import itertools

    from dicom_service.render import lut

    rng = np.random.default_rng(7)
    off_by_one = compared = 0
    for itemsize, bits, signed, slope, intercept, function, invert in itertools.product(
            (1, 2), (8, 12, 16), (False, True), (1.0, 0.5, -2.0), (0.0, -1024.0, 12.3),
            (VoiFunction.LINEAR, VoiFunction.LINEAR_EXACT), (False, True)):
        if bits > 8 * itemsize:
            continue
        frame = rng.integers(0, 1 << (8 * itemsize), (32, 32)).astype(f"u{itemsize}")
        for center, width in ((40.0, 400.0), (-600.0, 1500.0), (0.5, 1.5), (7.0, 10000.0)):
            window = Window(center, width, function)
            linear = lut._linear_map(slope, intercept, window, invert)
            assert linear is not None
            table = lut._cached_table(itemsize, bits, signed, slope, intercept, window, invert)
            expected = np.take(table, frame).astype(int)
            got = lut._apply_linear(frame, bits, signed, *linear)
            assert got.dtype == np.uint8 and got.shape == frame.shape
            diff = np.abs(got.astype(int) - expected)
            assert diff.max() <= 1, (itemsize, bits, signed, slope, intercept, window, invert)
            off_by_one += int(np.count_nonzero(diff))
            compared += diff.size
    assert off_by_one / compared < 0.001
    # numpy's path (the C window's fallback) keeps its scratch buffer for small frames only
    big = rng.integers(0, 4096, (600, 600)).astype(np.uint16)
    assert np.array_equal(lut._apply_linear_numpy(big, 12, False, 0.25, 0.0),
                          np.rint(np.clip((big & 0x0FFF) * 0.25, 0, 255)).astype(np.uint8))
    kept = getattr(lut._scratch, "buffer", None)
    assert kept is not None and kept.size <= lut._KEPT_SCRATCH
    # what is not linear keeps the table: SIGMOID, and a LINEAR window of width 1
    assert lut._linear_map(1.0, 0.0, Window(0, 10, VoiFunction.SIGMOID), False) is None
    assert lut._linear_map(1.0, 0.0, Window(0, 1), False) is None
