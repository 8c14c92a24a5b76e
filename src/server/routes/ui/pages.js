// A timeline's index as the viewer holds it: fetched a page at a time (`?offset=&limit=`)
// where the playhead, the filmstrip or a deep link needs it, so an hour-long timeline opens
// with one page of a few hundred entries, never the whole 100,000-entry index.
//
// Frames are addressed by position in seq order (0 … total - 1), which is what the slider
// and the filmstrip move over; the server finds a position from its manifest's chunk counts,
// reading only the chunk that holds it.
//
// For tests, `requests` counts the index pages fetched.

import { api } from "/ui/fetcher.js";

export const PAGE = 256; // frames per page around the playhead

export class FrameIndex {
  constructor(timeline) {
    this.timeline = timeline;
    this.total = 0;
    this.frames = new Map(); // position -> frame
    this.loading = new Map(); // request key -> promise
    this.timed = false; // frames carry increasing timestamps
    this.overlays = [];
    this.warnings = [];
    this.requests = 0;
    this.onPage = () => {};
  }

  get length() {
    return this.total;
  }

  // The frame at `position` if its page is here, else undefined.
  at(position) {
    return this.frames.get(position);
  }

  url(query) {
    return `/v1/timelines/${encodeURIComponent(this.timeline)}?${query}`;
  }

  // Fetches one page and files its frames by position; the same request runs once.
  fetch(query) {
    let pending = this.loading.get(query);
    if (pending) return pending;
    this.requests += 1;
    pending = api(this.url(query))
      .then((response) => response.json())
      .then((page) => {
        this.total = page.total;
        page.frames.forEach((frame, i) => this.frames.set(page.offset + i, frame));
        this.onPage();
        return page;
      });
    pending.catch(() => this.loading.delete(query));
    this.loading.set(query, pending);
    return pending;
  }

  // Opens the timeline at the page holding `seq` (a deep link), or at its start; resolves
  // to the position to show first.
  async open(seq) {
    let page = await this.fetch(`offset=0&limit=${PAGE}`);
    this.overlays = page.overlays;
    this.warnings = page.warnings || [];
    const frames = page.frames;
    this.timed = frames.length > 1 && frames[frames.length - 1].timestamp > frames[0].timestamp;
    if (seq === undefined || seq === null) return 0;
    const here = frames.findIndex((f) => f.seq === seq);
    if (here >= 0) return here;
    page = await this.fetch(`from=${seq}&limit=${PAGE}`);
    return page.frames[0]?.seq === seq ? page.offset : 0;
  }

  // Resolves to the frame at `position`, fetching the page that holds it.
  async load(position) {
    if (position < 0 || position >= this.total) return undefined;
    if (!this.frames.has(position)) {
      const start = position - (position % PAGE);
      await this.fetch(`offset=${start}&limit=${PAGE}`);
    }
    return this.frames.get(position);
  }

  // Resolves to the frame at `position` alone (one entry): for sparse samples such as the
  // filmstrip's coarse strip, which would otherwise fetch a whole page per slot.
  async loadOne(position) {
    if (position < 0 || position >= this.total) return undefined;
    if (!this.frames.has(position)) await this.fetch(`offset=${position}&limit=1`);
    return this.frames.get(position);
  }
}
