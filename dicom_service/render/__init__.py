"""Rendering stored instances for people: decode -> modality LUT -> VOI LUT /
window -> 8-bit -> JPEG/PNG/GIF, cached (PS3.18 Section 8.3.5 rendered resources).
"""

from dicom_service.render.decode import (
    NATIVE_LITTLE_ENDIAN,
    FrameNotFound,
    ImageHeader,
    NotRenderable,
)
from dicom_service.render.params import (
    BadRenderParameter,
    MediaType,
    NotAcceptable,
    RenderParams,
    Viewport,
    VoiFunction,
    Window,
    negotiate,
    params_from_query,
    params_from_wado,
)
from dicom_service.render.renderer import Rendered, Renderer

__all__ = [
    "NATIVE_LITTLE_ENDIAN",
    "BadRenderParameter",
    "FrameNotFound",
    "ImageHeader",
    "MediaType",
    "NotAcceptable",
    "NotRenderable",
    "RenderParams",
    "Rendered",
    "Renderer",
    "Viewport",
    "VoiFunction",
    "Window",
    "negotiate",
    "params_from_query",
    "params_from_wado",
]
