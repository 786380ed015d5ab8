// DICOMweb client of the viewer: QIDO-RS, WADO-RS metadata, raw frames
// (multipart/related, parsed here), rendered images and thumbnails, and the
// panel annotations API. Credentials: the caller's bearer token when one is
// given, else the same-origin session cookie (fetch credentials "same-origin").

export class HttpError extends Error {
  constructor(status, what) {
    super(`${what} failed (HTTP ${status})`);
    this.status = status;
  }
}

// a session (cookie) must send its CSRF token, from a readable cookie, on
// state-changing requests (dicom_service/web/auth.py)
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const CSRF_HEADER = "X-CSRF-Token";

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)dicom_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

const EXPLICIT_VR_LE = "1.2.840.10008.1.2.1";
const RAW_ACCEPT = `multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT_VR_LE}`;

export class DicomWebClient {
  constructor({ dicomwebRoot = "/dicom-web", token = null } = {}) {
    this.root = dicomwebRoot.replace(/\/$/, "");
    this.token = token;
  }

  headers(accept, extra = {}) {
    const h = { Accept: accept, ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  async fetch(url, accept, what, init = {}) {
    const extra = { ...(init.headers || {}) };
    const method = (init.method || "GET").toUpperCase();
    if (!this.token && !SAFE_METHODS.has(method)) extra[CSRF_HEADER] = csrfToken();
    const response = await fetch(url, {
      credentials: "same-origin",
      ...init,
      headers: this.headers(accept, extra),
    });
    if (!response.ok) throw new HttpError(response.status, what);
    return response;
  }

  async json(path, what) {
    const r = await this.fetch(this.root + path, "application/dicom+json", what);
    return r.status === 204 ? [] : r.json();
  }

  studies() {
    return this.json("/studies?limit=1000", "study search");
  }

  series(study) {
    return this.json(`/studies/${study}/series`, "series search");
  }

  seriesMetadata(study, series) {
    return this.json(`/studies/${study}/series/${series}/metadata`, "series metadata");
  }

  // One raw frame (uncompressed little endian) as an ArrayBuffer of exactly
  // `length` bytes when given (the parser then jumps over the pixel bytes
  // instead of searching them for the boundary).
  async frame(study, series, sop, number, length) {
    const url = `${this.root}/studies/${study}/series/${series}/instances/${sop}/frames/${number}`;
    const r = await this.fetch(url, RAW_ACCEPT, "frame");
    const boundary = boundaryOf(r.headers.get("content-type") || "");
    const body = new Uint8Array(await r.arrayBuffer());
    return firstPart(body, boundary, length);
  }

  // The server-rendered frame (its default window) as an ImageBitmap.
  async rendered(study, series, sop, number) {
    const url = `${this.root}/studies/${study}/series/${series}/instances/${sop}/frames/${number}/rendered`;
    const r = await this.fetch(url, "image/jpeg", "rendered frame");
    return createImageBitmap(await r.blob());
  }

  // A series thumbnail as an object URL (an <img src> could not send the token).
  async thumbnail(study, series) {
    const r = await this.fetch(`${this.root}/studies/${study}/series/${series}/thumbnail`,
      "image/jpeg", "thumbnail");
    return URL.createObjectURL(await r.blob());
  }

  // The panel (GET /api/panels/{id}): its shared studies are what the viewer opens.
  async panel(url) {
    const r = await this.fetch(url, "application/json", "loading the panel");
    return r.json();
  }

  async annotations(url) {
    const r = await this.fetch(url, "application/json", "annotations");
    return r.json();
  }

  async addAnnotation(url, body) {
    const r = await this.fetch(url, "application/json", "saving the annotation", {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
    });
    return r.json();
  }

  async deleteAnnotation(url, id) {
    await this.fetch(`${url}/${id}`, "application/json", "deleting the annotation",
      { method: "DELETE" });
  }
}

function boundaryOf(contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  if (!m) throw new Error("multipart response without a boundary");
  return m[1] || m[2];
}

function indexOf(haystack, needle, from) {
  const first = needle[0];
  const last = haystack.length - needle.length;
  outer: for (let i = haystack.indexOf(first, from); i !== -1 && i <= last;
    i = haystack.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function lastIndexOf(haystack, needle) {
  const first = needle[0];
  for (let i = haystack.lastIndexOf(first, haystack.length - needle.length); i !== -1;
    i = i ? haystack.lastIndexOf(first, i - 1) : -1) {
    let ok = true;
    for (let j = 1; j < needle.length && ok; j++) ok = haystack[i + j] === needle[j];
    if (ok) return i;
  }
  return -1;
}

// The body of the first part of a multipart/related message (PS3.18 8.6.1.2),
// copied into its own (aligned) ArrayBuffer.
export function firstPart(body, boundary, length) {
  const delimiter = new TextEncoder().encode(`--${boundary}`);
  const open = indexOf(body, delimiter, 0);
  if (open < 0) throw new Error("multipart response without its delimiter");
  const crlf2 = new Uint8Array([13, 10, 13, 10]);
  const headersEnd = indexOf(body, crlf2, open);
  if (headersEnd < 0) throw new Error("multipart part without headers");
  const start = headersEnd + 4;
  let end;
  if (length !== undefined && start + length <= body.length) {
    end = start + length;
  } else {
    const close = lastIndexOf(body, delimiter);
    end = close - 2; // the CRLF before the delimiter belongs to it
  }
  if (end < start) throw new Error("malformed multipart response");
  return body.buffer.slice(body.byteOffset + start, body.byteOffset + end);
}
