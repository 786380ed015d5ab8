// The embeddable viewer.
//
//   import { mountViewer } from "/viewer/viewer.js";
//   const viewer = mountViewer(element, {
//     studyUIDs: ["1.2..."],      // or panelId: 7 (the panel's shared studies); with
//                                 // neither, every study the caller may see
//     token: "...",               // optional bearer token; else same-origin credentials
//     dicomwebRoot: "/dicom-web",
//     annotationsUrl: "/api/panels/7/annotations",   // optional; default from panelId
//   });
//
// Grey-scale frames are fetched raw (uncompressed little endian), cached as
// typed arrays and windowed here through a lookup table, so a window drag
// redraws without a request; colour images use the server's rendering.

import { drawAnnotations, label, POINTS } from "./annotate.js";
import { DicomWebClient } from "./dicomweb.js";
import { applyLut, buildLut, imageInfo, rangeWindow, TAGS, text, typedPixels, value } from "./image.js";
import { commandFor, helpTable, PRESETS } from "./keys.js";
import { AnnotationStore } from "./shared.js";
import { tagRows } from "./tags.js";

const PREFETCH_CONCURRENCY = 4;
const NON_IMAGE = new Set(["SR", "PR", "KO", "DOC", "REG", "SEG", "RTSTRUCT", "RTPLAN"]);
const TOOLS = [["wl", "W/L"], ["pan", "Pan"], ["zoom", "Zoom"], ["length", "Length"],
  ["angle", "Angle"], ["arrow", "Arrow"]];

export function mountViewer(element, options = {}) {
  const viewer = new Viewer(element, options);
  viewer.ready = viewer.open();
  return viewer;
}

function el(doc, tag, className, parent, textContent) {
  const node = doc.createElement(tag);
  if (className) node.className = className;
  if (textContent !== undefined) node.textContent = textContent;
  if (parent) parent.appendChild(node);
  return node;
}

function formatDate(da) {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da;
}

export class Viewer {
  constructor(element, options) {
    this.element = element;
    this.doc = element.ownerDocument;
    this.client = new DicomWebClient(options);
    this.studyUIDs = options.studyUIDs || null;
    const panel = options.panelId != null ? `/api/panels/${encodeURIComponent(options.panelId)}`
      : null;
    this.panelUrl = panel;
    this.annotationsUrl = options.annotationsUrl || (panel ? `${panel}/annotations` : null);
    this.series = [];
    this.current = null;
    this.index = 0;
    this.active = 0;
    this.tool = "wl";
    this.view = null;
    this.shared = new AnnotationStore(this.client, this.annotationsUrl, () => {
      this.listAnnotations();
      this.requestDraw();
    }, (message) => this.showMessage(message, { passing: true }));
    this.pending = null;
    this.cine = { playing: false, fps: 15, last: 0 };
    // performance.now() marks and counters read by the benchmark
    this.metrics = { openAt: 0, firstDrawAt: null, firstRawAt: null, draws: 0, drawMs: 0,
      prefetchDoneAt: null };
    this.lutKey = null;
    this.imageKey = null;
    this.rafPending = false;
    this.wheelRest = 0;
    this.build();
  }

  // ---------------------------------------------------------------- DOM
  build() {
    const d = this.doc;
    const root = el(d, "div", "dv-root", this.element);
    root.tabIndex = 0;
    root.setAttribute("aria-label", "Image viewer; press ? for keyboard shortcuts");
    this.root = root;
    const bar = el(d, "div", "dv-toolbar", root);
    bar.setAttribute("role", "toolbar");
    this.toolButtons = {};
    for (const [tool, name] of TOOLS) {
      const b = el(d, "button", "dv-tool", bar, name);
      b.type = "button";
      b.addEventListener("click", () => this.setTool(tool));
      this.toolButtons[tool] = b;
    }
    const actions = [["Fit", "fit"], ["Invert", "invert"], ["Rotate", "rotate"],
      ["Flip H", "flipH"], ["Flip V", "flipV"], ["Reset", "reset"], ["Tags", "tags"], ["?", "help"]];
    for (const [name, command] of actions) {
      const b = el(d, "button", "dv-action", bar, name);
      b.type = "button";
      b.addEventListener("click", () => { this.run(command); root.focus(); });
    }
    const presets = el(d, "select", "dv-presets", bar);
    presets.setAttribute("aria-label", "Window preset");
    el(d, "option", "", presets, "Window preset").value = "";
    for (const p of PRESETS) el(d, "option", "", presets, `${p.key} ${p.name}`).value = p.key;
    presets.addEventListener("change", () => {
      if (presets.value) this.run(`preset${presets.value}`);
      presets.value = "";
      root.focus();
    });
    this.playButton = el(d, "button", "dv-action", bar, "▶ Cine");
    this.playButton.type = "button";
    this.playButton.addEventListener("click", () => { this.run("cine"); root.focus(); });
    const fpsLabel = el(d, "label", "dv-fps", bar, "fps ");
    this.fpsInput = el(d, "input", "", fpsLabel);
    Object.assign(this.fpsInput, { type: "number", min: 1, max: 60, value: 15 });
    this.fpsInput.addEventListener("change", () => {
      this.cine.fps = Math.min(60, Math.max(1, Number(this.fpsInput.value) || 15));
    });

    const side = el(d, "aside", "dv-side", root);
    el(d, "h2", "", side, "Series");
    this.seriesList = el(d, "ul", "dv-series", side);
    el(d, "h2", "", side, "Annotations");
    this.annotationList = el(d, "ul", "dv-annotations", side);

    const vp = el(d, "div", "dv-viewport", root);
    this.viewport = vp;
    this.canvas = el(d, "canvas", "dv-canvas", vp);
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.overlay = {};
    const corners = {
      tl: ["patient", "patientId", "date", "description"],
      tr: ["seriesNumber", "instance", "position"],
      bl: ["window", "zoom"],
      br: ["location", "thickness"],
    };
    for (const [corner, fields] of Object.entries(corners)) {
      const box = el(d, "div", `dv-corner dv-${corner}`, vp);
      for (const f of fields) {
        const line = el(d, "div", "", box);
        line.dataset.overlay = f;
        this.overlay[f] = line;
      }
    }
    this.warning = el(d, "div", "dv-warning", vp);
    this.warning.hidden = true;
    this.message = el(d, "div", "dv-message", vp);
    this.message.hidden = true;
    const loading = el(d, "div", "dv-loading", vp);
    this.loadingBar = el(d, "div", "dv-loading-bar", loading);
    this.loadingText = el(d, "span", "", loading);
    this.loadingBox = loading;
    this.slider = el(d, "input", "dv-slider", vp);
    Object.assign(this.slider, { type: "range", min: 0, max: 0, value: 0, step: 1 });
    this.slider.setAttribute("aria-label", "Image in series");
    this.slider.addEventListener("input", () => this.go(Number(this.slider.value)));
    this.note = el(d, "form", "dv-note", vp);
    this.note.hidden = true;
    this.noteInput = el(d, "input", "", this.note);
    this.noteInput.setAttribute("aria-label", "Note for the arrow");
    this.noteInput.maxLength = 500;
    el(d, "button", "", this.note, "Save").type = "submit";

    this.tagPanel = el(d, "aside", "dv-tags", root);
    this.tagPanel.hidden = true;
    this.help = el(d, "div", "dv-help", root);
    this.help.hidden = true;
    this.help.setAttribute("role", "dialog");
    el(d, "h2", "", this.help, "Keyboard and mouse");
    this.help.appendChild(helpTable(d));

    root.addEventListener("keydown", (e) => this.onKey(e));
    this.canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.note.addEventListener("submit", (e) => { e.preventDefault(); this.finishNote(true); });
    this.noteInput.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.stopPropagation(); this.finishNote(false); }
    });
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(vp);
    this.setTool("wl");
  }

  // ---------------------------------------------------------------- loading
  async open() {
    this.metrics.openAt = performance.now();
    try {
      let studies = this.studyUIDs;
      if (!studies && this.panelUrl) studies = (await this.client.panel(this.panelUrl)).studies;
      if (!studies) studies = (await this.client.studies()).map((ds) => text(ds, "0020000D"));
      const lists = await Promise.all(studies.map(async (study) =>
        (await this.client.series(study)).map((ds) => ({
          study,
          uid: text(ds, "0020000E"),
          number: Number(value(ds, TAGS.seriesNumber) ?? 0),
          description: text(ds, TAGS.seriesDescription),
          modality: text(ds, TAGS.modality),
          count: Number(value(ds, "00201209") ?? 0),
          frames: null, pixels: [], rendered: [], done: [], inflight: new Set(), loaded: 0,
        })).sort((a, b) => a.number - b.number)));
      this.series = lists.flat();
      if (!this.series.length) throw new Error("no images to show");
      // open the main stack (the image series with the most instances; the
      // first of them on a tie), not a localizer that happens to be series 1
      const images = this.series.filter((s) => !NON_IMAGE.has(s.modality) && s.count > 0);
      const first = images.reduce((best, s) => (s.count > best.count ? s : best), images[0]) ||
        this.series[0];
      first.metadata = this.loadMetadata(first); // asked before any DOM work
      this.listSeries();
      const shown = this.selectSeries(first);
      this.shared.load();
      await shown;
      this.loadThumbnails();
    } catch (error) {
      this.showMessage(error.message);
    }
  }

  listSeries() {
    const d = this.doc;
    this.seriesList.textContent = "";
    for (const s of this.series) {
      const li = el(d, "li", "dv-series-item", this.seriesList);
      li.tabIndex = 0;
      li.dataset.series = s.uid;
      s.thumb = el(d, "img", "dv-thumb", li);
      s.thumb.alt = "";
      const caption = el(d, "div", "dv-caption", li);
      el(d, "div", "", caption, `${s.modality} ${s.number}: ${s.description || "(no description)"}`);
      el(d, "div", "dv-count", caption, `${s.count} image${s.count === 1 ? "" : "s"}`);
      const progress = el(d, "div", "dv-progress", caption);
      s.bar = el(d, "div", "dv-progress-bar", progress);
      const open = () => { this.selectSeries(s); this.root.focus(); };
      li.addEventListener("click", open);
      li.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      s.item = li;
    }
  }

  async loadThumbnails() {
    for (const s of this.series) {
      try {
        s.thumb.src = await this.client.thumbnail(s.study, s.uid);
      } catch {
        s.thumb.classList.add("dv-thumb-missing");
      }
    }
  }

  async loadMetadata(s) {
    const instances = (await this.client.seriesMetadata(s.study, s.uid)).map((ds) => ({
      ds, info: imageInfo(ds),
    }));
    instances.sort((a, b) => a.info.instanceNumber - b.info.instanceNumber);
    const frames = [];
    for (const { ds, info } of instances) {
      for (let n = 1; n <= info.frames; n++) frames.push({ ds, info, number: n });
    }
    s.frames = frames;
    s.count = frames.length;
  }

  async selectSeries(s) {
    this.stopCine();
    this.current = s;
    for (const other of this.series) other.item?.classList.toggle("dv-selected", other === s);
    this.index = 0;
    this.pending = null;
    if (!s.frames) {
      if (!s.metadata) s.metadata = this.loadMetadata(s);
      try {
        await s.metadata;
      } catch (error) {
        s.metadata = null; // asked again when selected again
        this.showMessage(error.message);
        return;
      }
      if (this.current !== s) return;
    }
    const info = s.frames[0].info;
    this.view = this.defaultView(info);
    const fresh = !s.done[0] && !s.inflight.has(0);
    if (fresh) {
      // the first image before any layout work: the server's rendering and the
      // raw frame race, alone (the prefetch starts once the raw frame is in)
      if (info.grayscale && !s.rendered[0]) this.loadRendered(s, 0);
      this.active++;
      s.inflight.add(0);
      this.loadFrame(s, 0).finally(() => {
        this.active--;
        s.inflight.delete(0);
        this.pump();
      });
    }
    this.listAnnotations(); // their lengths need this series' pixel spacing
    this.slider.max = String(s.frames.length - 1);
    this.showWarning(info);
    this.fit();
    this.go(0);
    if (!fresh) this.pump();
  }

  defaultView(info) {
    const w = info.window || { center: 0, width: 0 };
    return { center: w.center, width: w.width, auto: !info.window, invert: false,
      zoom: 1, panX: 0, panY: 0, rotation: 0, flipH: false, flipV: false, fitted: true };
  }

  async loadRendered(s, i) {
    const f = s.frames[i];
    try {
      s.rendered[i] = await this.client.rendered(s.study, s.uid, f.info.sop, f.number);
      if (!f.info.grayscale) this.markDone(s, i);
      if (s === this.current && i === this.index) this.requestDraw();
    } catch (error) {
      if (!f.info.grayscale) this.markDone(s, i, error);
    }
  }

  // Load frames outward from the current one, a few requests at a time.
  pump() {
    const s = this.current;
    if (!s || !s.frames) return;
    while (this.active < PREFETCH_CONCURRENCY) {
      const i = this.nextToLoad(s);
      if (i < 0) break;
      this.active++;
      s.inflight.add(i);
      this.loadFrame(s, i).finally(() => {
        this.active--;
        s.inflight.delete(i);
        this.pump();
      });
    }
  }

  nextToLoad(s) {
    const n = s.frames.length;
    for (let d = 0; d < n; d++) {
      for (const i of d ? [this.index + d, this.index - d] : [this.index]) {
        if (i >= 0 && i < n && !s.done[i] && !s.inflight.has(i)) return i;
      }
    }
    return -1;
  }

  async loadFrame(s, i) {
    const f = s.frames[i];
    if (!f.info.grayscale) return this.loadRendered(s, i);
    try {
      const buffer = await this.client.frame(s.study, s.uid, f.info.sop, f.number, f.info.frameBytes);
      s.pixels[i] = typedPixels(f.info, buffer);
      this.markDone(s, i);
      if (s === this.current && i === this.index) this.requestDraw();
    } catch (error) {
      this.markDone(s, i, error);
    }
  }

  markDone(s, i, error) {
    if (s.done[i]) return;
    s.done[i] = error ? "failed" : "ok";
    s.loaded++;
    if (error) s.failed = (s.failed || 0) + 1;
    const fraction = s.loaded / s.frames.length;
    s.bar.style.width = `${(100 * fraction).toFixed(1)}%`;
    if (s === this.current) this.showProgress();
    if (s.loaded === s.frames.length && s === this.current && this.metrics.prefetchDoneAt === null) {
      this.metrics.prefetchDoneAt = performance.now();
    }
  }

  showProgress() {
    const s = this.current;
    const total = s.frames.length;
    this.loadingBox.hidden = s.loaded >= total;
    this.loadingBar.style.width = `${(100 * s.loaded / total).toFixed(1)}%`;
    this.loadingText.textContent = `Loading ${s.loaded} / ${total}` +
      (s.failed ? ` (${s.failed} failed)` : "");
  }

  // ---------------------------------------------------------------- annotations
  // The pixel spacing of the annotated image; undefined while its series is not loaded.
  spacingOf(a) {
    for (const s of this.series) {
      const f = s.frames?.find((x) => x.info.sop === a.sop);
      if (f) return f.info.spacing;
    }
    return undefined;
  }

  listAnnotations() {
    const d = this.doc;
    this.annotationList.textContent = "";
    for (const a of this.shared.items) {
      const li = el(d, "li", "dv-annotation", this.annotationList);
      li.dataset.kind = a.kind;
      const name = a.kind[0].toUpperCase() + a.kind.slice(1);
      const spacing = this.spacingOf(a);
      const measured = spacing !== undefined || (a.kind !== "length" && a.kind !== "angle");
      const what = el(d, "button", "dv-annotation-go", li,
        measured ? `${name} ${label(a, spacing)}` : name);
      what.type = "button";
      what.addEventListener("click", () => this.goTo(a));
      if (a.author && !a.mine) el(d, "span", "dv-author", li, a.author);
      if (a.mine !== false) {
        const del = el(d, "button", "dv-delete", li, "×");
        del.type = "button";
        del.setAttribute("aria-label", `Delete ${name}`);
        del.addEventListener("click", () => this.shared.remove(a));
      }
    }
  }

  async goTo(a) {
    const s = this.series.find((x) => x.uid === a.series);
    if (!s) return;
    if (s !== this.current) await this.selectSeries(s);
    const i = s.frames.findIndex((f) => f.info.sop === a.sop && f.number === a.frame);
    if (i >= 0) this.go(i);
  }

  // ---------------------------------------------------------------- navigation
  go(i) {
    const s = this.current;
    if (!s || !s.frames) return;
    const n = s.frames.length;
    const next = Math.min(n - 1, Math.max(0, i));
    const changed = next !== this.index;
    this.index = next;
    if (changed) this.pending = null; // a measurement belongs to one image
    this.slider.value = String(next);
    if (this.tagPanel.hidden === false) this.showTags();
    this.requestDraw();
    if (changed) this.pump();
  }

  nextSeries(step) {
    if (!this.series.length) return;
    const i = (this.series.indexOf(this.current) + step + this.series.length) % this.series.length;
    this.selectSeries(this.series[i]);
  }

  stopCine() {
    this.cine.playing = false;
    this.playButton.textContent = "▶ Cine";
  }

  // ---------------------------------------------------------------- view
  frameInfo() {
    return this.current?.frames?.[this.index]?.info;
  }

  setWindow(center, width) {
    this.view.center = Math.round(center);
    this.view.width = Math.max(1, Math.round(width));
    this.view.auto = false;
    this.requestDraw();
  }

  fit() {
    const info = this.frameInfo();
    if (!info || !this.view) return;
    const w = this.viewport.clientWidth;
    const h = this.viewport.clientHeight;
    const turned = this.view.rotation % 180 !== 0;
    const cols = turned ? info.rows : info.columns;
    const rows = turned ? info.columns : info.rows;
    Object.assign(this.view, { zoom: Math.min(w / cols, h / rows) || 1, panX: 0, panY: 0,
      fitted: true });
    this.requestDraw();
  }

  setZoom(zoom) {
    this.view.zoom = Math.min(40, Math.max(0.05, zoom));
    this.view.fitted = false;
    this.requestDraw();
  }

  setTool(tool) {
    this.tool = tool;
    this.pending = null;
    for (const [t, b] of Object.entries(this.toolButtons)) {
      b.setAttribute("aria-pressed", String(t === tool));
    }
    this.requestDraw();
  }

  run(command) {
    const v = this.view;
    const s = this.current;
    if (command.startsWith("tool:")) return this.setTool(command.slice(5));
    if (command.startsWith("preset")) {
      const p = PRESETS.find((x) => x.key === command.slice(6));
      if (v && p) this.setWindow(p.center, p.width);
      return;
    }
    const n = s?.frames?.length || 0;
    switch (command) {
      case "previous": return this.go(this.index - 1);
      case "next": return this.go(this.index + 1);
      case "back10": return this.go(this.index - 10);
      case "forward10": return this.go(this.index + 10);
      case "first": return this.go(0);
      case "last": return this.go(n - 1);
      case "previousSeries": return this.nextSeries(-1);
      case "nextSeries": return this.nextSeries(1);
      case "help": this.help.hidden = !this.help.hidden; return;
      case "tags":
        this.tagPanel.hidden = !this.tagPanel.hidden;
        if (!this.tagPanel.hidden) this.showTags();
        return;
      case "escape":
        this.pending = null;
        this.help.hidden = true;
        this.requestDraw();
        return;
      case "cine":
        if (this.cine.playing) return this.stopCine();
        this.cine.playing = true;
        this.cine.last = performance.now();
        this.playButton.textContent = "❚❚ Pause";
        return this.requestDraw();
      default:
    }
    if (!v) return;
    switch (command) {
      case "zoomIn": return this.setZoom(v.zoom * 1.25);
      case "zoomOut": return this.setZoom(v.zoom / 1.25);
      case "fit": return this.fit();
      case "rotate": v.rotation = (v.rotation + 90) % 360; break;
      case "rotateBack": v.rotation = (v.rotation + 270) % 360; break;
      case "flipH": v.flipH = !v.flipH; break;
      case "flipV": v.flipV = !v.flipV; break;
      case "invert": v.invert = !v.invert; break;
      case "reset":
        this.view = this.defaultView(this.frameInfo());
        this.fit();
        return;
      default: return;
    }
    if (v.fitted && (command === "rotate" || command === "rotateBack")) this.fit();
    this.requestDraw();
  }

  // ---------------------------------------------------------------- input
  onKey(e) {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    const command = commandFor(e);
    if (!command) return;
    e.preventDefault();
    this.run(command);
  }

  onWheel(e) {
    e.preventDefault();
    this.wheelRest += e.deltaMode === 1 ? e.deltaY * 33 : e.deltaY;
    const steps = Math.trunc(this.wheelRest / 100);
    if (steps) {
      this.wheelRest -= steps * 100;
      this.go(this.index + steps);
    }
  }

  // device pixels of the canvas <- image coordinates
  matrix(info) {
    const v = this.view;
    const dpr = this.dpr || 1;
    const m = new DOMMatrix();
    m.translateSelf(Math.round(this.canvas.width / 2 + v.panX * dpr),
      Math.round(this.canvas.height / 2 + v.panY * dpr));
    m.rotateSelf(v.rotation);
    m.scaleSelf(v.zoom * dpr * (v.flipH ? -1 : 1), v.zoom * dpr * (v.flipV ? -1 : 1));
    m.translateSelf(-info.columns / 2, -info.rows / 2);
    return m;
  }

  toImage(e) {
    const r = this.canvas.getBoundingClientRect();
    const dpr = this.dpr || 1;
    const p = this.matrix(this.frameInfo()).inverse()
      .transformPoint(new DOMPoint((e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr));
    return [Math.round(p.x * 100) / 100, Math.round(p.y * 100) / 100];
  }

  // Client (CSS page) coordinates of image point (x, y): for tests and scripts.
  imageToClient(x, y) {
    const r = this.canvas.getBoundingClientRect();
    const dpr = this.dpr || 1;
    const p = this.matrix(this.frameInfo()).transformPoint(new DOMPoint(x, y));
    return { x: r.left + p.x / dpr, y: r.top + p.y / dpr };
  }

  onPointerDown(e) {
    if (!this.view || !this.frameInfo()) return;
    this.root.focus();
    e.preventDefault();
    try { this.canvas.setPointerCapture(e.pointerId); } catch { /* synthetic events */ }
    const mode = e.button === 1 ? "pan" : e.button === 2 ? "zoom" : this.tool;
    const v = this.view;
    this.drag = { mode, x: e.clientX, y: e.clientY, center: v.center, width: v.width,
      zoom: v.zoom, panX: v.panX, panY: v.panY, moved: false };
    if (POINTS[mode]) this.measureDown(mode, this.toImage(e));
  }

  onPointerMove(e) {
    const d = this.drag;
    if (this.pending) {
      this.pending.points[this.pending.points.length - 1] = this.toImage(e);
      this.requestDraw();
    }
    if (!d) return;
    const dx = e.clientX - d.x;
    const dy = e.clientY - d.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) d.moved = true;
    const v = this.view;
    if (d.mode === "wl") {
      const k = Math.max(1, d.width / 256);
      this.setWindow(d.center + dy * k, d.width + dx * k);
    } else if (d.mode === "pan") {
      v.panX = d.panX + dx;
      v.panY = d.panY + dy;
      v.fitted = false;
      this.requestDraw();
    } else if (d.mode === "zoom") {
      this.setZoom(d.zoom * Math.exp(-dy / 200));
    }
  }

  onPointerUp(e) {
    const d = this.drag;
    this.drag = null;
    if (d && POINTS[d.mode] && this.pending && d.moved) this.measureFix(this.toImage(e));
  }

  // A click adds a fixed point; the last point follows the pointer until fixed.
  measureDown(kind, point) {
    if (!this.pending || this.pending.kind !== kind) {
      this.pending = { kind, points: [point, point] };
    } else {
      this.measureFix(point);
    }
    this.requestDraw();
  }

  measureFix(point) {
    const p = this.pending;
    p.points[p.points.length - 1] = point;
    if (p.points.length < POINTS[p.kind]) {
      p.points.push(point);
      return;
    }
    const [a, b] = p.points;
    if (p.kind !== "angle" && Math.hypot(b[0] - a[0], b[1] - a[1]) < 1) return;
    this.pending = null;
    const s = this.current;
    const f = s.frames[this.index];
    const annotation = { kind: p.kind, points: p.points, text: "", study: s.study, series: s.uid,
      sop: f.info.sop, frame: f.number, mine: true };
    if (p.kind === "arrow") {
      this.noteFor = annotation;
      this.note.hidden = false;
      this.noteInput.value = "";
      this.noteInput.focus();
    } else {
      this.shared.add(annotation);
    }
    this.requestDraw();
  }

  finishNote(save) {
    const a = this.noteFor;
    this.noteFor = null;
    this.note.hidden = true;
    if (save && a) {
      a.text = this.noteInput.value.trim();
      this.shared.add(a);
    }
    this.root.focus();
    this.requestDraw();
  }

  // ---------------------------------------------------------------- drawing
  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.viewport.clientWidth * dpr));
    const h = Math.max(1, Math.round(this.viewport.clientHeight * dpr));
    this.dpr = dpr;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.imageKey = null;
    }
    if (this.view?.fitted) this.fit();
    this.requestDraw();
  }

  requestDraw() {
    if (this.rafPending) return;
    this.rafPending = true;
    requestAnimationFrame((t) => this.frame(t));
  }

  frame(t) {
    this.rafPending = false;
    if (this.cine.playing && this.current?.frames) {
      const step = 1000 / this.cine.fps;
      if (t - this.cine.last >= step) {
        this.cine.last = t - ((t - this.cine.last) % step);
        this.go((this.index + 1) % this.current.frames.length);
      }
      this.requestDraw();
    }
    this.draw();
  }

  draw() {
    const s = this.current;
    const f = s?.frames?.[this.index];
    if (!f || !this.view) return;
    const started = performance.now();
    const info = f.info;
    const v = this.view;
    const ctx = this.ctx;
    const pixels = s.pixels[this.index];
    let source = null;
    if (pixels && info.grayscale) {
      if (v.auto) Object.assign(v, rangeWindow(info, pixels), { auto: false });
      source = this.windowed(s, info, pixels);
    } else if (s.rendered[this.index]) {
      source = s.rendered[this.index];
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    const m = this.matrix(info);
    if (source) {
      ctx.setTransform(m);
      // interpolated like other viewers, except at one image pixel per screen pixel
      ctx.imageSmoothingEnabled = v.zoom !== 1;
      ctx.drawImage(source, 0, 0, info.columns, info.rows);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
    }
    const here = this.shared.forImage(info.sop, f.number);
    if (this.pending) here.push({ ...this.pending, pending: true });
    const toScreen = (p) => m.transformPoint(new DOMPoint(p[0], p[1]));
    if (here.length) drawAnnotations(ctx, here, toScreen, info.spacing, this.dpr || 1);
    this.showOverlay(s, f);
    const now = performance.now();
    this.metrics.draws++;
    this.metrics.drawMs += now - started;
    if (source && this.metrics.firstDrawAt === null) this.metrics.firstDrawAt = now;
    const raw = Boolean(pixels && info.grayscale);
    if (raw && this.metrics.firstRawAt === null) this.metrics.firstRawAt = now;
    this.rawShown = raw;
    this.shown = Boolean(source);
  }

  // The offscreen canvas holding the current frame through the current window.
  windowed(s, info, pixels) {
    const v = this.view;
    const lutKey = [v.center, v.width, v.invert, info.slope, info.intercept, info.signed,
      info.bitsAllocated, info.photometric].join("|");
    if (lutKey !== this.lutKey) {
      this.lut = buildLut(info, v.center, v.width, v.invert);
      this.lutKey = lutKey;
    }
    const imageKey = `${s.uid}|${this.index}|${lutKey}`;
    if (imageKey !== this.imageKey) {
      if (!this.offscreen || this.offscreen.width !== info.columns ||
        this.offscreen.height !== info.rows) {
        this.offscreen = new OffscreenCanvas(info.columns, info.rows);
        this.offctx = this.offscreen.getContext("2d");
        this.imageData = new ImageData(info.columns, info.rows);
        this.out32 = new Uint32Array(this.imageData.data.buffer);
      }
      applyLut(this.lut, pixels, this.out32);
      this.offctx.putImageData(this.imageData, 0, 0);
      this.imageKey = imageKey;
    }
    return this.offscreen;
  }

  showOverlay(s, f) {
    const info = f.info;
    const ds = f.ds;
    const v = this.view;
    const set = (key, value) => {
      if (this.overlay[key].textContent !== value) this.overlay[key].textContent = value;
    };
    set("patient", text(ds, TAGS.patientName));
    set("patientId", text(ds, TAGS.patientId));
    set("date", formatDate(text(ds, TAGS.studyDate)));
    set("description", s.description);
    set("seriesNumber", `Se ${s.number}`);
    set("instance", `Im ${info.instanceNumber}` + (info.frames > 1 ? ` Fr ${f.number}/${info.frames}` : ""));
    set("position", `${this.index + 1} / ${s.frames.length}`);
    set("window", info.grayscale ? `W ${v.width} L ${v.center}${v.invert ? " inv" : ""}` : "W/L rendered");
    set("zoom", `Zoom ${v.zoom.toFixed(2)}x`);
    set("location", info.sliceLocation === null ? "" : `Loc ${info.sliceLocation.toFixed(2)} mm`);
    set("thickness", info.sliceThickness === null ? "" : `Thick ${info.sliceThickness.toFixed(2)} mm`);
  }

  showWarning(info) {
    let message = "";
    if (info.spacingAtDetector) {
      message = "Measurements use ImagerPixelSpacing (at the detector, not corrected for magnification)";
    } else if (!info.spacing) {
      message = "No pixel spacing: lengths in pixels";
    }
    this.warning.textContent = message;
    this.warning.hidden = !message;
  }

  // A problem in words; a passing one (saving an annotation) goes after a while.
  showMessage(message, { passing = false } = {}) {
    this.message.textContent = message;
    this.message.hidden = false;
    clearTimeout(this.messageTimer);
    if (passing) this.messageTimer = setTimeout(() => { this.message.hidden = true; }, 8000);
  }

  async showTags() {
    const f = this.current?.frames?.[this.index];
    if (!f) return;
    if (!this.dictionary) {
      this.dictionary = fetch(new URL("./dictionary.json", import.meta.url))
        .then((r) => (r.ok ? r.json() : { keywords: {} }))
        .then((d) => d.keywords)
        .catch(() => ({}));
    }
    const keywords = await this.dictionary;
    if (this.tagsShownFor === f.ds) return;
    this.tagsShownFor = f.ds;
    this.tagPanel.textContent = "";
    el(this.doc, "h2", "", this.tagPanel, "DICOM tags");
    const table = el(this.doc, "table", "dv-tag-table", this.tagPanel);
    for (const [tag, name, vr, shown, depth] of tagRows(f.ds, keywords)) {
      const row = table.insertRow();
      row.insertCell().textContent = tag;
      const n = row.insertCell();
      n.textContent = name;
      n.style.paddingLeft = `${depth * 12}px`;
      row.insertCell().textContent = vr;
      row.insertCell().textContent = shown;
    }
  }

  // Take the viewer out of the page: timers, observers, cached images.
  destroy() {
    this.stopCine();
    this.shared.stop();
    clearTimeout(this.messageTimer);
    this.resizeObserver.disconnect();
    for (const s of this.series) {
      if (s.thumb?.src.startsWith("blob:")) URL.revokeObjectURL(s.thumb.src);
      for (const bitmap of s.rendered) bitmap?.close();
      s.pixels = [];
      s.rendered = [];
    }
    this.root.remove();
  }

  // What tests and the benchmark read.
  status() {
    const s = this.current;
    return {
      series: s?.uid ?? null, index: this.index, count: s?.frames?.length ?? 0,
      loaded: s?.loaded ?? 0, rawShown: Boolean(this.rawShown), shown: Boolean(this.shown),
      center: this.view?.center, width: this.view?.width, zoom: this.view?.zoom,
      annotations: this.shared.items.filter((a) => !a.pending).length,
    };
  }
}
