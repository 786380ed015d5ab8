// Image facts from DICOM JSON metadata (PS3.18 Annex F) and the grey-scale
// pipeline: Modality LUT (rescale) then linear VOI window (PS3.3 C.11.2.1.2)
// precomputed once per window into a lookup table indexed by the stored value.

export function value(ds, tag, i = 0) {
  const v = ds[tag]?.Value;
  return v === undefined ? undefined : v[i];
}

export function values(ds, tag) {
  return ds[tag]?.Value || [];
}

export function text(ds, tag) {
  const v = value(ds, tag);
  if (v === undefined || v === null) return "";
  if (typeof v === "object") return v.Alphabetic || v.Ideographic || v.Phonetic || "";
  return String(v);
}

function number(ds, tag, fallback) {
  const v = Number(value(ds, tag));
  return Number.isFinite(v) ? v : fallback;
}

const T = {
  rows: "00280010", columns: "00280011", bitsAllocated: "00280100",
  pixelRepresentation: "00280103", samplesPerPixel: "00280002", photometric: "00280004",
  frames: "00280008", slope: "00281053", intercept: "00281052", center: "00281050",
  width: "00281051", pixelSpacing: "00280030", imagerPixelSpacing: "00181164",
  instanceNumber: "00200013", sliceLocation: "00201041", sliceThickness: "00180050",
  position: "00200032", orientation: "00200037", sop: "00080018", seriesNumber: "00200011",
  patientName: "00100010", patientId: "00100020", studyDate: "00080020",
  seriesDescription: "0008103E", modality: "00080060", smallest: "00280106", largest: "00280107",
};
export { T as TAGS };

// What drawing one instance needs, from its metadata.
export function imageInfo(ds) {
  const photometric = text(ds, T.photometric) || "MONOCHROME2";
  const ps = values(ds, T.pixelSpacing).map(Number);
  const ips = values(ds, T.imagerPixelSpacing).map(Number);
  const info = {
    sop: text(ds, T.sop),
    rows: number(ds, T.rows, 0),
    columns: number(ds, T.columns, 0),
    bitsAllocated: number(ds, T.bitsAllocated, 16),
    signed: number(ds, T.pixelRepresentation, 0) === 1,
    samplesPerPixel: number(ds, T.samplesPerPixel, 1),
    photometric,
    frames: Math.max(1, number(ds, T.frames, 1)),
    slope: number(ds, T.slope, 1),
    intercept: number(ds, T.intercept, 0),
    instanceNumber: number(ds, T.instanceNumber, 0),
    sliceLocation: number(ds, T.sliceLocation, null),
    sliceThickness: number(ds, T.sliceThickness, null),
    position: values(ds, T.position).map(Number),
    orientation: values(ds, T.orientation).map(Number),
    // [row spacing, column spacing] in mm; `detector` when only ImagerPixelSpacing
    spacing: ps.length === 2 ? ps : ips.length === 2 ? ips : null,
    spacingAtDetector: ps.length !== 2 && ips.length === 2,
    window: null,
  };
  info.grayscale = info.samplesPerPixel === 1 &&
    (photometric === "MONOCHROME1" || photometric === "MONOCHROME2") &&
    (info.bitsAllocated === 16 || info.bitsAllocated === 8);
  const c = Number(value(ds, T.center));
  const w = Number(value(ds, T.width));
  if (Number.isFinite(c) && Number.isFinite(w) && w >= 1) info.window = { center: c, width: w };
  info.frameBytes = info.rows * info.columns * info.samplesPerPixel * (info.bitsAllocated / 8);
  return info;
}

// A default window when the instance has none: the full range of the frame.
export function rangeWindow(info, pixels) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < pixels.length; i++) {
    const v = pixels[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  lo = lo * info.slope + info.intercept;
  hi = hi * info.slope + info.intercept;
  return { center: Math.round((lo + hi) / 2), width: Math.max(1, Math.round(hi - lo)) };
}

// The stored frame as typed pixels: signed or unsigned 16 or 8 bits.
export function typedPixels(info, buffer) {
  if (info.bitsAllocated === 8) return info.signed ? new Int8Array(buffer) : new Uint8Array(buffer);
  return info.signed ? new Int16Array(buffer) : new Uint16Array(buffer);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// RGBA words for every possible stored value (65536 or 256 entries): rescale,
// then the linear VOI function of PS3.3 C.11.2.1.2.1, rounded half up; inverted
// for MONOCHROME1 unless the user inverts again.
export function buildLut(info, center, width, invert) {
  const bits = info.bitsAllocated;
  const size = 1 << bits;
  const lut = new Uint32Array(size);
  const shift = 32 - bits;
  const c = center - 0.5;
  const w = Math.max(1, width) - 1;
  const low = c - w / 2;
  const high = c + w / 2;
  const flip = invert !== (info.photometric === "MONOCHROME1");
  for (let i = 0; i < size; i++) {
    const stored = info.signed ? (i << shift) >> shift : i;
    const x = stored * info.slope + info.intercept;
    let y;
    if (x <= low) y = 0;
    else if (x > high) y = 255;
    else y = Math.floor(((x - c) / w + 0.5) * 255 + 0.5);
    if (flip) y = 255 - y;
    lut[i] = LITTLE_ENDIAN
      ? (0xff000000 | (y << 16) | (y << 8) | y) >>> 0
      : ((y << 24) | (y << 16) | (y << 8) | 0xff) >>> 0;
  }
  return lut;
}

// Apply `lut` to the stored pixels into an RGBA Uint32 view of ImageData.
export function applyLut(lut, pixels, out) {
  // the unsigned view indexes the table by the stored bit pattern
  const raw = pixels instanceof Int16Array ? new Uint16Array(pixels.buffer, pixels.byteOffset,
    pixels.length) : pixels instanceof Int8Array ? new Uint8Array(pixels.buffer,
    pixels.byteOffset, pixels.length) : pixels;
  const n = Math.min(raw.length, out.length);
  for (let i = 0; i < n; i++) out[i] = lut[raw[i]];
}
