"""The renderer: stored file -> frame -> 8-bit display image -> JPEG/PNG/GIF,
with a byte-bounded cache of outputs and a cache of parsed headers."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from pydicom.errors import InvalidDicomError

from dicom_service.render.cache import ByteLRU
from dicom_service.render.decode import (
    NATIVE_LITTLE_ENDIAN,
    FilePath,
    ImageHeader,
    NotRenderable,
    header_from_json,
    read_frame,
    read_header,
)
from dicom_service.render.encode import apply_viewport, encode
from dicom_service.render.lut import to_display
from dicom_service.render.params import MediaType, RenderParams

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_HEADER_ENTRIES = 2048
# headers carrying bigger LUTs or palettes are not kept (2048 x 64k-entry
# palettes would be hundreds of MB)
MAX_CACHED_LUT_ENTRIES = 4096


def _cacheable(header: ImageHeader) -> bool:
    sizes = [len(lut.data) for lut in (header.modality_lut, header.voi_lut) if lut is not None]
    if header.palette is not None:
        sizes.append(len(header.palette[1]))
    return all(size <= MAX_CACHED_LUT_ENTRIES for size in sizes)


@dataclass(frozen=True)
class Rendered:
    content: bytes
    media_type: MediaType


class Renderer:
    """Thread-safe; one per process.

    Outputs are cached under (file identity, frame, parameters), where the file
    identity is its path, size and modification time: a replaced file is never
    answered from a stale entry.
    """

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 header_entries: int = DEFAULT_HEADER_ENTRIES) -> None:
        self.cache = ByteLRU(cache_bytes)
        self._headers: OrderedDict[Hashable, ImageHeader] = OrderedDict()
        self._header_entries = header_entries
        self._lock = threading.Lock()

    def header(self, path: FilePath, identity: Hashable, offset: int | None = None,
               length: int | None = None, metadata_json: str | None = None,
               transfer_syntax: str | None = None) -> ImageHeader:
        with self._lock:
            found = self._headers.get(identity)
            if found is not None:
                self._headers.move_to_end(identity)
                return found
        header = None
        if (metadata_json and transfer_syntax in NATIVE_LITTLE_ENDIAN and offset is not None
                and length is not None):
            # native pixel data located by the index: no need to parse the file
            try:
                attrs = json.loads(metadata_json)
            except ValueError:
                attrs = None
            if isinstance(attrs, dict):
                header = header_from_json(attrs, transfer_syntax, offset, length)
        if header is None:
            try:
                header = read_header(path, offset, length)
            except NotRenderable:
                raise
            except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError,
                    AttributeError, IndexError) as exc:
                # parser messages may quote values: keep only the type
                raise NotRenderable(
                    f"The stored instance could not be parsed ({type(exc).__name__})."
                ) from None
        if not _cacheable(header):
            return header
        with self._lock:
            self._headers[identity] = header
            while len(self._headers) > self._header_entries:
                self._headers.popitem(last=False)
        return header

    def render(self, path: FilePath, frame: int, params: RenderParams, *,
               offset: int | None = None, length: int | None = None,
               metadata_json: str | None = None,
               transfer_syntax: str | None = None) -> Rendered:
        """Render frame ``frame`` (0-based) of the stored file at ``path``.

        ``offset``/``length``: the Pixel Data value location from the index, if
        known; with the instance's DICOM JSON (``metadata_json``) and its
        ``transfer_syntax`` from the index, a native frame is rendered without
        parsing the file's header. Raises :class:`~dicom_service.render.decode.NotRenderable`,
        :class:`~dicom_service.render.decode.FrameNotFound`,
        :class:`~dicom_service.render.params.BadRenderParameter`, and
        ``FileNotFoundError`` when the file is gone.
        """
        name = os.fspath(path)
        st = os.stat(name)
        identity = (name, st.st_size, st.st_mtime_ns)
        key = (identity, frame, params.cache_key())
        cached = self.cache.get(key)
        if cached is not None:
            return Rendered(cached, params.media_type)
        header = self.header(path, identity, offset, length, metadata_json, transfer_syntax)
        pixels = read_frame(name, header, frame)
        image = apply_viewport(to_display(header, pixels, params.window), params.viewport)
        content = encode(image, params.media_type, params.quality)
        self.cache.put(key, content)
        return Rendered(content, params.media_type)
