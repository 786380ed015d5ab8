"""The viewer in Chromium against the real service: the pixels on screen are
the stored CT through the window shown in the overlay, computed here with
numpy from the stored file (PS3.3 C.11.2.1.2.1, rounded half up)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image
from playwright.sync_api import Page
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.browser.conftest import CT_SLICES, ISSUER, PATIENT_ID, SCREENSHOTS, CtService
from tests.conftest import PEER
from tests.support.peers import storescu

REGION = (160, 160, 192)  # image x, y and size of the checked square
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
MF_SIZE = 64


def open_viewer(page: Page, ct: CtService) -> None:
    page.goto(ct.viewer_url())
    page.wait_for_function(
        "n => window.viewer && window.viewer.status().rawShown"
        " && window.viewer.status().loaded === n", arg=CT_SLICES, timeout=20_000)
    # one image pixel per screen pixel, so screen and stored pixels line up
    page.evaluate("() => window.viewer.setZoom(1)")
    settle(page)


def settle(page: Page) -> None:
    """Wait until the viewer has drawn what was asked (two animation frames)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def overlay(page: Page, name: str) -> str:
    return page.locator(f'[data-overlay="{name}"]').inner_text()


def window_shown(page: Page) -> tuple[int, int]:
    match = re.fullmatch(r"W (-?\d+) L (-?\d+)", overlay(page, "window"))
    assert match, overlay(page, "window")
    return int(match[1]), int(match[2])


def screen_region(page: Page) -> NDArray[np.uint8]:
    x, y, size = REGION
    corner = page.evaluate("([x, y]) => window.viewer.imageToClient(x, y)", [x, y])
    png = page.screenshot(clip={"x": corner["x"], "y": corner["y"], "width": size,
                                "height": size})
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def expected_region(ct: CtService, index: int, width: int, center: int) -> NDArray[np.uint8]:
    ds = pydicom.dcmread(ct.stored_file(ct.sops[index]))
    x = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    c, w = center - 0.5, max(1, width) - 1
    y = np.floor(((x - c) / w + 0.5) * 255 + 0.5)
    y = np.where(x <= c - w / 2, 0, np.where(x > c + w / 2, 255, y))
    x0, y0, size = REGION
    return y[y0:y0 + size, x0:x0 + size].astype(np.uint8)


def assert_shows(page: Page, ct: CtService, index: int) -> NDArray[np.uint8]:
    width, center = window_shown(page)
    actual = screen_region(page)
    expected = expected_region(ct, index, width, center)
    diff = np.abs(actual.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())
    assert expected.std() > 5  # the region has structure: a shifted image would not match
    return actual


def canvas_centre(page: Page) -> tuple[float, float]:
    box = page.locator(".dv-canvas").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_viewer_shows_the_ct_through_the_stored_window(page: Page, ct_service: CtService) -> None:
    open_viewer(page, ct_service)
    assert window_shown(page) == (400, 40)  # the stored window of the series
    assert overlay(page, "instance") == "Im 1"
    assert overlay(page, "position") == f"1 / {CT_SLICES}"
    assert overlay(page, "patient") == ct_service.pseudonym
    assert overlay(page, "thickness") == "Thick 2.50 mm"
    assert overlay(page, "location").startswith("Loc ")
    assert overlay(page, "zoom") == "Zoom 1.00x"
    assert_shows(page, ct_service, 0)
    page.wait_for_function("() => document.querySelector('.dv-thumb').naturalWidth > 0")
    # every frame cached: the series' progress bar is full, the loading bar gone
    assert page.locator(".dv-progress-bar").evaluate("e => e.style.width") == "100%"
    assert page.locator(".dv-loading").is_hidden()


def test_wheel_and_keys_scroll_the_stack(page: Page, ct_service: CtService) -> None:
    open_viewer(page, ct_service)
    first = assert_shows(page, ct_service, 0)
    page.mouse.move(*canvas_centre(page))
    page.mouse.wheel(0, 100)
    page.wait_for_function("() => window.viewer.status().index === 1")
    settle(page)
    assert overlay(page, "instance") == "Im 2"
    second = assert_shows(page, ct_service, 1)
    assert (first != second).any()
    page.keyboard.press("ArrowDown")
    settle(page)
    assert overlay(page, "instance") == "Im 3"
    assert_shows(page, ct_service, 2)
    page.keyboard.press("End")
    settle(page)
    assert overlay(page, "instance") == f"Im {CT_SLICES}"
    assert_shows(page, ct_service, CT_SLICES - 1)
    page.keyboard.press("ArrowUp")
    settle(page)
    assert overlay(page, "instance") == f"Im {CT_SLICES - 1}"
    page.keyboard.press("Home")
    settle(page)
    assert overlay(page, "instance") == "Im 1"
    assert page.locator(".dv-slider").input_value() == "0"


def test_dragging_changes_the_window(page: Page, ct_service: CtService) -> None:
    open_viewer(page, ct_service)
    before = assert_shows(page, ct_service, 0)
    x, y = canvas_centre(page)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 40, steps=4)
    page.mouse.up()
    settle(page)
    width, center = window_shown(page)
    assert width > 400 and center > 40
    after = assert_shows(page, ct_service, 0)
    assert (before != after).any()


@pytest.mark.parametrize(("key", "width", "center"), [
    ("1", 400, 40), ("2", 1500, -600), ("3", 150, 90), ("4", 2500, 480), ("5", 80, 40)])
def test_preset_keys(page: Page, ct_service: CtService, key: str, width: int,
                     center: int) -> None:
    open_viewer(page, ct_service)
    if key == "1":  # already the stored window: move away first so the key has to act
        page.keyboard.press("2")
    page.keyboard.press(key)
    settle(page)
    assert window_shown(page) == (width, center)
    assert_shows(page, ct_service, 0)


def test_length_and_angle_in_millimetres(page: Page, ct_service: CtService) -> None:
    open_viewer(page, ct_service)
    spacing = [float(v) for v in pydicom.dcmread(ct_service.stored_file(ct_service.sops[0]),
                                                 stop_before_pixels=True).PixelSpacing]

    def at(x: int, y: int) -> tuple[float, float]:
        p = page.evaluate("([x, y]) => window.viewer.imageToClient(x, y)", [x, y])
        return p["x"], p["y"]

    page.keyboard.press("d")
    page.mouse.move(*at(100, 300))
    page.mouse.down()
    page.mouse.move(*at(400, 300), steps=5)
    page.mouse.up()
    expected_mm = 300 * spacing[1]
    item = page.locator('.dv-annotation[data-kind="length"]')
    assert item.inner_text().startswith(f"Length {expected_mm:.1f} mm")

    page.keyboard.press("a")
    for point in ((400, 300), (100, 300), (100, 100)):
        page.mouse.click(*at(*point))
    u = np.array([300 * spacing[1], 0.0])
    v = np.array([0.0, -200 * spacing[0]])
    angle = np.degrees(np.arccos(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
    assert page.locator('.dv-annotation[data-kind="angle"]').inner_text().startswith(
        f"Angle {angle:.1f}°")
    assert page.locator(".dv-warning").is_hidden()  # PixelSpacing is there
    settle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "viewer.png"))


def test_help_tags_and_view_commands(page: Page, ct_service: CtService) -> None:
    open_viewer(page, ct_service)
    page.keyboard.press("?")
    help_box = page.locator(".dv-help")
    assert help_box.is_visible()
    assert "Window preset: Lung (W 1500 / L -600)" in help_box.inner_text()
    page.keyboard.press("Escape")
    assert help_box.is_hidden()
    page.keyboard.press("t")
    tags = page.locator(".dv-tags")
    tags.get_by_text("PixelSpacing", exact=True).wait_for()
    assert "(0028,0030)" in tags.inner_text()
    page.keyboard.press("t")
    page.evaluate("() => window.viewer.setZoom(1)")
    settle(page)
    before = screen_region(page)
    page.keyboard.press("i")
    settle(page)
    assert overlay(page, "window").endswith(" inv")
    assert (screen_region(page).astype(int) == 255 - before.astype(int)).all()
    page.keyboard.press("+")
    settle(page)
    assert overlay(page, "zoom") == "Zoom 1.25x"
    page.keyboard.press(" ")
    settle(page)
    assert overlay(page, "window") == "W 400 L 40"


def test_without_credentials_the_viewer_says_so(page: Page, ct_service: CtService) -> None:
    page.goto(f"{ct_service.url}/viewer/index.html#study={ct_service.study}")
    message = page.locator(".dv-message")
    message.wait_for()
    assert "HTTP 401" in message.inner_text()


def test_static_files_media_types_caching_and_root(ct_service: CtService) -> None:
    with httpx.Client(base_url=ct_service.url) as client:
        page = client.get("/viewer/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        module = client.get("/viewer/viewer.js")
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        assert module.headers["cache-control"] == "no-cache"
        assert module.headers["x-content-type-options"] == "nosniff"
        again = client.get("/viewer/viewer.js", headers={"If-None-Match": module.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert client.get("/viewer/viewer.css").headers["content-type"].startswith("text/css")
        dictionary = client.get("/viewer/dictionary.json").json()
        assert dictionary["keywords"]["00280030"] == "PixelSpacing"
        assert client.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"
        for bad in ("/viewer/../pyproject.toml", "/viewer/%2e%2e/pyproject.toml",
                    "/viewer/nothing.js", "/viewer/..%2fREADME.md"):
            assert client.get(bad).status_code == 404, bad


@pytest.fixture(scope="module")
def multiframe_study(ct_service: CtService, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 3-frame 16-bit MONOCHROME1 XA instance of the same patient, in its own
    study; returns the pseudonymous study UID."""
    path = tmp_path_factory.mktemp("multiframe") / "xa.dcm"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = XA_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = XA_IMAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = "Frames^Test", PATIENT_ID, ISSUER
    ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20250101", "XA", 1, 1
    ds.Rows = ds.Columns = MF_SIZE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.NumberOfFrames, ds.WindowCenter, ds.WindowWidth = 3, 2048, 4096
    ds.ImagerPixelSpacing = [0.2, 0.25]  # no PixelSpacing: lengths at the detector
    yy, xx = np.mgrid[0:MF_SIZE, 0:MF_SIZE]
    ds.PixelData = np.stack([(xx * 61 + yy * 3 + f * 900) % 4096 for f in range(3)]
                            ).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    svc = ct_service.service
    result = storescu([path], "127.0.0.1", svc.dicom_port, svc.ae_title, PEER)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = svc.query("SELECT study_uid FROM instances WHERE number_of_frames = 3")
    assert len(rows) == 1
    return str(rows[0][0])


def test_multiframe_monochrome1_frames_are_the_stack(page: Page, ct_service: CtService,
                                                    multiframe_study: str) -> None:
    page.goto(f"{ct_service.url}/viewer/index.html#study={multiframe_study}"
              f"&token={ct_service.token}")
    page.wait_for_function("() => window.viewer && window.viewer.status().loaded === 3")
    page.evaluate("() => window.viewer.setZoom(1)")
    settle(page)
    sop = ct_service.service.query("SELECT sop_uid FROM instances WHERE number_of_frames = 3")
    frames = pydicom.dcmread(ct_service.stored_file(str(sop[0][0]))).pixel_array
    for index in range(3):
        assert overlay(page, "instance") == f"Im 1 Fr {index + 1}/3"
        corner = page.evaluate("() => window.viewer.imageToClient(0, 0)")
        png = page.screenshot(clip={"x": corner["x"], "y": corner["y"], "width": MF_SIZE,
                                    "height": MF_SIZE})
        actual = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[..., 0].astype(int)
        c, w = 2048 - 0.5, 4096 - 1
        x = frames[index].astype(np.float64)
        shown = np.clip(np.floor(((x - c) / w + 0.5) * 255 + 0.5), 0, 255)
        expected = 255 - shown  # MONOCHROME1: low values are white
        assert np.abs(actual - expected).max() <= 1
        page.keyboard.press("ArrowDown")
        settle(page)

    warning = page.locator(".dv-warning")
    assert warning.is_visible() and "ImagerPixelSpacing" in warning.inner_text()
    page.keyboard.press("d")  # 40 columns x 0.25 mm
    start = page.evaluate("() => window.viewer.imageToClient(10, 30)")
    end = page.evaluate("() => window.viewer.imageToClient(50, 30)")
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    page.mouse.move(end["x"], end["y"], steps=3)
    page.mouse.up()
    assert page.locator(".dv-annotation").inner_text().startswith("Length 10.0 mm")


def test_two_studies_and_series_keys(page: Page, ct_service: CtService,
                                     multiframe_study: str) -> None:
    page.goto(f"{ct_service.url}/viewer/index.html#study={ct_service.study},{multiframe_study}"
              f"&token={ct_service.token}")
    page.wait_for_function("() => window.viewer && window.viewer.status().rawShown")
    assert page.locator(".dv-series-item").count() == 2
    assert page.evaluate("() => window.viewer.status().series") == ct_service.series
    page.keyboard.press("]")
    page.wait_for_function("() => window.viewer.status().count === 3")
    settle(page)
    assert overlay(page, "instance") == "Im 1 Fr 1/3"
    page.keyboard.press("[")
    page.wait_for_function(f"() => window.viewer.status().count === {CT_SLICES}")
    settle(page)
    assert overlay(page, "instance") == "Im 1"
    selected = page.locator(".dv-series-item.dv-selected")
    assert selected.get_attribute("data-series") == ct_service.series


def test_flip_rotate_and_cine(page: Page, ct_service: CtService) -> None:
    open_viewer(page, ct_service)
    corner = page.evaluate("() => window.viewer.imageToClient(0, 0)")
    clip = {"x": corner["x"], "y": corner["y"], "width": 512, "height": 512}

    def shot() -> NDArray[np.uint8]:
        settle(page)
        png = page.screenshot(clip=clip)
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[..., 0]

    upright = shot()
    page.keyboard.press("h")
    assert (shot() == np.fliplr(upright)).all()
    page.keyboard.press("v")
    assert (shot() == np.flipud(np.fliplr(upright))).all()
    page.keyboard.press(" ")  # reset, then back to one image pixel per screen pixel
    page.evaluate("() => window.viewer.setZoom(1)")
    page.keyboard.press("r")
    page.evaluate("() => window.viewer.setZoom(1)")
    assert (shot() == np.rot90(upright, k=-1)).all()  # 90 degrees clockwise

    page.keyboard.press("c")
    page.wait_for_function("() => window.viewer.status().index >= 3")
    page.keyboard.press("c")
    settle(page)
    stopped = page.evaluate("() => window.viewer.status().index")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.viewer.status().index") == stopped


def test_multipart_parser(page: Page, ct_service: CtService) -> None:
    """The first part of multipart/related bodies, with and without a known length,
    at an odd offset (the copy must be aligned for a Uint16Array)."""
    page.goto(f"{ct_service.url}/viewer/index.html#study={ct_service.study}")
    parsed = page.evaluate("""async () => {
      const { firstPart } = await import("/viewer/dicomweb.js");
      const enc = new TextEncoder();
      const payload = new Uint8Array([45, 45, 98, 13, 10, 1, 2, 3, 45, 45]);
      const body = (boundary, preamble) => {
        const head = enc.encode(`${preamble}--${boundary}\\r\\nContent-Type: application/`
          + `octet-stream\\r\\n\\r\\n`);
        const tail = enc.encode(`\\r\\n--${boundary}\\r\\nContent-Type: x\\r\\n\\r\\nzz`
          + `\\r\\n--${boundary}--\\r\\n`);
        const all = new Uint8Array(head.length + payload.length + tail.length);
        all.set(head); all.set(payload, head.length); all.set(tail, head.length + payload.length);
        return all;
      };
      const single = (boundary) => {
        const head = enc.encode(`--${boundary}\\r\\nContent-Type: a/b\\r\\n\\r\\n`);
        const tail = enc.encode(`\\r\\n--${boundary}--`);
        const all = new Uint8Array(head.length + payload.length + tail.length);
        all.set(head); all.set(payload, head.length); all.set(tail, head.length + payload.length);
        return all;
      };
      const known = firstPart(body("b0und", "x"), "b0und", payload.length);
      const unknown = firstPart(single("b0und"), "b0und");
      return [Array.from(new Uint8Array(known)), Array.from(new Uint8Array(unknown)),
              new Uint16Array(known).length];
    }""")
    payload = [45, 45, 98, 13, 10, 1, 2, 3, 45, 45]
    assert parsed == [payload, payload, 5]


def test_colour_images_use_the_servers_rendering(page: Page, ct_service: CtService,
                                                 tmp_path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SC_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SC_IMAGE, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = "Colour^Test", PATIENT_ID, ISSUER
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", 1, 1
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 30)
    rgb[:, 32:] = (30, 30, 200)
    ds.PixelData = rgb.tobytes()
    ds.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    svc = ct_service.service
    result = storescu([tmp_path / "rgb.dcm"], "127.0.0.1", svc.dicom_port, svc.ae_title, PEER)
    assert result.returncode == 0, result.stderr[-2000:]
    study = svc.query("SELECT study_uid FROM instances WHERE sop_class_uid = ?", SC_IMAGE)
    page.goto(f"{ct_service.url}/viewer/index.html#study={study[0][0]}&token={ct_service.token}")
    page.wait_for_function("() => window.viewer && window.viewer.status().shown")
    page.evaluate("() => window.viewer.setZoom(1)")
    settle(page)
    assert overlay(page, "window") == "W/L rendered"
    assert not page.evaluate("() => window.viewer.status().rawShown")
    corner = page.evaluate("() => window.viewer.imageToClient(0, 0)")
    png = page.screenshot(clip={"x": corner["x"], "y": corner["y"], "width": 64, "height": 64})
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    # JPEG is lossy: the block centres within a few levels of the stored colours
    assert np.abs(shown[32, 12] - (200, 30, 30)).max() <= 12
    assert np.abs(shown[32, 52] - (30, 30, 200)).max() <= 12
