"""Parsing and validation of rendering parameters and media-type negotiation."""

from __future__ import annotations

import pytest

from dicom_service.render import (
    BadRenderParameter,
    MediaType,
    NotAcceptable,
    Viewport,
    VoiFunction,
    Window,
    negotiate,
    params_from_query,
    params_from_wado,
)
from dicom_service.render.params import Region


def test_defaults() -> None:
    params = params_from_query({})
    assert params.media_type is MediaType.JPEG
    assert params.window is None and params.viewport is None and params.quality == 90


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"window": "40,400"}, Window(40, 400)),
        ({"window": "-600,1500,linear_exact"}, Window(-600, 1500, VoiFunction.LINEAR_EXACT)),
        ({"window": " 40 , 400 , SIGMOID"}, Window(40, 400, VoiFunction.SIGMOID)),
    ],
)
def test_window(query: dict[str, str], expected: Window) -> None:
    assert params_from_query(query).window == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"viewport": "256,256"}, Viewport(256, 256)),
        ({"viewport": "128,64,10,20,100,50"}, Viewport(128, 64, Region(10, 20, 100, 50))),
    ],
)
def test_viewport(query: dict[str, str], expected: Viewport) -> None:
    assert params_from_query(query).viewport == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"window": "40"}, 'Parameter "window" must be'),
        ({"window": "40,abc"}, 'Parameter "window" must be a number'),
        ({"window": "40,nan"}, "finite"),
        ({"window": "40,400,CUBIC"}, "LINEAR, LINEAR_EXACT or SIGMOID"),
        ({"window": "40,0"}, "width must be >= 1"),
        ({"window": "40,0,SIGMOID"}, "width must be > 0"),
        ({"viewport": "0,10"}, 'Parameter "viewport" must be between 1 and 4096'),
        ({"viewport": "10"}, 'Parameter "viewport" must be "vw,vh"'),
        ({"viewport": "10,10,0,0,-5,5"}, "sw,sh > 0"),
        ({"viewport": "99999,10"}, "between 1 and 4096"),
        ({"viewport": "1e3,10"}, "must be an integer"),
        ({"quality": "0"}, 'Parameter "quality" must be between 1 and 100'),
        ({"quality": "high"}, "must be an integer"),
        ({"quality": ["50", "60"]}, "given once"),
    ],
)
def test_bad_parameters_are_refused_with_a_reason(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadRenderParameter, match=message):
        params_from_query(query)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ([], MediaType.JPEG),
        (["*/*"], MediaType.JPEG),
        (["image/*"], MediaType.JPEG),
        (["image/png"], MediaType.PNG),
        (["image/gif, image/png"], MediaType.GIF),
        (["image/jpeg;q=0.5, image/png"], MediaType.PNG),
        (["application/json, image/png;q=0.1"], MediaType.PNG),
        (["IMAGE/GIF"], MediaType.GIF),
        (["image/png;q=0, image/gif;q=0.2"], MediaType.GIF),
    ],
)
def test_negotiation(accept: list[str], expected: MediaType) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize("accept", [["application/dicom"], ["image/webp"], ["image/png;q=0"],
                                    ["multipart/related; type=image/jpeg"]])
def test_not_acceptable(accept: list[str]) -> None:
    with pytest.raises(NotAcceptable, match="image/jpeg, image/png or image/gif"):
        negotiate(accept)


def test_wado_uri_parameters() -> None:
    params, frame = params_from_wado({
        "contentType": "image/png", "rows": "128", "windowCenter": "40",
        "windowWidth": "400", "imageQuality": "70", "frameNumber": "3",
        "region": "0.25,0.25,0.75,0.75",
    })
    assert params.media_type is MediaType.PNG and frame == 2 and params.quality == 70
    assert params.window == Window(40, 400)
    assert params.viewport == Viewport(None, 128, None, (0.25, 0.25, 0.75, 0.75))
    params, frame = params_from_wado({})
    assert params.media_type is MediaType.JPEG and frame == 0 and params.viewport is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"windowCenter": "40"}, "go together"),
        ({"frameNumber": "0"}, 'Parameter "frameNumber" must be >= 1'),
        ({"region": "0.5,0.5,0.2,0.9"}, "0 <= x1 < x2 <= 1"),
        ({"region": "0,0,1"}, '"x1,y1,x2,y2"'),
        ({"rows": "-3"}, 'Parameter "rows" must be between'),
        ({"imageQuality": "101"}, 'Parameter "imageQuality" must be between 1 and 100'),
    ],
)
def test_bad_wado_parameters(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadRenderParameter, match=message):
        params_from_wado(query)


def test_wado_content_type_not_renderable() -> None:
    with pytest.raises(NotAcceptable):
        params_from_wado({"contentType": "image/webp"})
