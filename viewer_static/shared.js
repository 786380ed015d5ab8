// The annotations of one viewer: local ones, and with an annotations URL
// (a panel's, /api/panels/{id}/annotations) every member's, saved on the server
// and fetched again every few seconds so that others' new ones appear.

const POLL_MS = 15000;

function fromServer(a) {
  return { id: a.id, kind: a.kind, points: a.points, text: a.text, study: a.study_uid,
    series: a.series_uid, sop: a.sop_uid, frame: a.frame, author: a.author, mine: a.mine };
}

export class AnnotationStore {
  // `changed()` after every change; `failed(message)` when the server refuses.
  constructor(client, url, changed, failed) {
    this.client = client;
    this.url = url;
    this.changed = changed;
    this.failed = failed;
    this.items = [];
    this.timer = null;
    this.stopped = false;
  }

  forImage(sop, frame) {
    return this.items.filter((a) => a.sop === sop && a.frame === frame);
  }

  // The server's list (local unsaved ones kept), then again after a while.
  async load() {
    if (!this.url || this.stopped) return;
    try {
      const list = await this.client.annotations(this.url);
      const local = this.items.filter((a) => a.id === undefined);
      this.items = [...list.map(fromServer), ...local];
      this.changed();
    } catch (error) {
      this.failed(error.message);
    }
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), POLL_MS);
  }

  // Add `a` (shown at once, marked pending until the server has it).
  async add(a) {
    this.items.push(a);
    a.pending = Boolean(this.url);
    this.changed();
    if (!this.url) return;
    try {
      const saved = await this.client.addAnnotation(this.url, {
        study_uid: a.study, series_uid: a.series, sop_uid: a.sop, frame: a.frame,
        kind: a.kind, points: a.points, text: a.text || "",
      });
      Object.assign(a, fromServer(saved), { pending: false });
    } catch (error) {
      this.items.splice(this.items.indexOf(a), 1);
      this.failed(error.message);
    }
    this.changed();
  }

  async remove(a) {
    try {
      if (a.id !== undefined && this.url) await this.client.deleteAnnotation(this.url, a.id);
      this.items.splice(this.items.indexOf(a), 1);
    } catch (error) {
      this.failed(error.message);
    }
    this.changed();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
