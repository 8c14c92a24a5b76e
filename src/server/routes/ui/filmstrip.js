// The filmstrip under the scrub bar: thumbnails of the frames around the playhead, and a
// coarse strip sampling the whole timeline with the playhead marked; a click on either seeks.
//
// The frames come from the viewer's paged index (ui/pages.js): a slot whose frame's page is
// not here yet asks for it (the coarse strip one entry per slot) and fills once it arrives.
//
// Thumbnails are `?scale=8` of the frames' own versioned URLs: decoded at 1/8 through the
// DCT by the server and immutable like the frames, so the browser cache keeps them. They
// load lazily (only slots on screen, through their own low-priority pool) and the playhead
// never waits for them: a slot shows its thumbnail whenever it arrives, if it still wants it.
//
// For tests, each slot's <img> carries data-seq, data-index and data-scale, and
// data-loaded once its thumbnail is drawn.

export const THUMB_SCALE = 8;
const NEAR = 4; // thumbnails each side of the playhead
const SLOT_WIDTH = 84; // px per coarse slot, gap included

export function thumbUrl(frame, scale = THUMB_SCALE) {
  return frame.url + (frame.url.includes("?") ? "&" : "?") + "scale=" + scale;
}

export class Filmstrip {
  constructor({ near, coarse, pool, onSeek }) {
    this.nearEl = near;
    this.coarseEl = coarse;
    this.pool = pool;
    this.onSeek = onSeek;
    this.frames = { length: 0, at: () => undefined };
    this.index = 0;
    this.coarseSlots = [];
    this.visible = new Set(); // slot <img>s on screen
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting) this.visible.add(e.target);
        else this.visible.delete(e.target);
        if (e.isIntersecting) this.fill(e.target);
      }
    });
    this.nearSlots = [];
    for (let d = -NEAR; d <= NEAR; d += 1) {
      const img = this.slot(d === 0 ? "thumb current" : "thumb");
      this.nearEl.append(img);
      this.nearSlots.push(img);
    }
    this.marker = document.createElement("div");
    this.marker.className = "marker";
    new ResizeObserver(() => this.layoutCoarse()).observe(this.coarseEl);
  }

  slot(className) {
    const img = document.createElement("img");
    img.className = className;
    img.alt = "";
    img.dataset.scale = String(THUMB_SCALE);
    img.addEventListener("click", () => {
      if (img.dataset.index !== undefined) this.onSeek(Number(img.dataset.index));
    });
    this.observer.observe(img);
    return img;
  }

  setFrames(frames) {
    this.frames = frames;
    this.pool.drop(() => false);
    this.layoutCoarse(true);
  }

  // One slot per SLOT_WIDTH of the strip's width, sampling the timeline evenly.
  layoutCoarse(force = false) {
    const n = Math.min(this.frames.length, Math.max(2, Math.floor(this.coarseEl.clientWidth / SLOT_WIDTH)));
    if (!force && n === this.coarseSlots.length) return;
    for (const img of this.coarseSlots) this.observer.unobserve(img);
    this.coarseSlots = [];
    for (let k = 0; k < n; k += 1) {
      const index = n === 1 ? 0 : Math.round((k * (this.frames.length - 1)) / (n - 1));
      const img = this.slot("thumb");
      img.dataset.coarse = "1";
      this.want(img, index);
      this.coarseSlots.push(img);
    }
    this.coarseEl.replaceChildren(...this.coarseSlots, this.marker);
    this.setPlayhead(this.index);
  }

  setPlayhead(index) {
    this.index = index;
    const last = Math.max(1, this.frames.length - 1);
    this.marker.style.left = `${(100 * index) / last}%`;
    this.nearSlots.forEach((img, i) => this.want(img, index + i - NEAR));
    const wanted = new Set(this.nearSlots.map((img) => img.dataset.seq));
    // Queued thumbnails of frames that left the near strip are not fetched any more.
    const coarse = new Set(this.coarseSlots.map((img) => img.dataset.seq));
    const keep = (seq) => wanted.has(String(seq)) || coarse.has(String(seq));
    this.pool.drop(keep);
    this.pool.release(keep);
  }

  // Points `img` at frame `index` (blank outside the timeline) and fills it if on screen.
  want(img, index) {
    img.dataset.want = String(index);
    const frame = this.frames.at(index);
    const pending = !frame && index >= 0 && index < this.frames.length;
    if (!frame) {
      delete img.dataset.seq;
      delete img.dataset.index;
      delete img.dataset.loaded;
      img.removeAttribute("src");
      img.classList.toggle("blank", !pending);
    }
    if (pending) {
      // Its page is not here yet: ask for it, and come back if the slot still wants it.
      const frames = this.frames;
      const load = img.dataset.coarse ? frames.loadOne(index) : frames.load(index);
      load.then(
        (frame) => frame && frames === this.frames && img.dataset.want === String(index) && this.want(img, index),
        () => {},
      );
    }
    if (!frame) return;
    img.classList.remove("blank");
    if (img.dataset.seq === String(frame.seq)) return;
    img.dataset.seq = String(frame.seq);
    img.dataset.index = String(index);
    img.title = `seq ${frame.seq} · ${frame.timestamp.toFixed(2)} s`;
    delete img.dataset.loaded;
    img.removeAttribute("src");
    if (this.visible.has(img)) this.fill(img);
  }

  fill(img) {
    const frame = this.frames.at(Number(img.dataset.index));
    if (!frame || img.dataset.loaded) return;
    const seq = img.dataset.seq;
    this.pool.load(thumbUrl(frame), frame.seq).then(
      (objectUrl) => {
        if (img.dataset.seq !== seq) return; // the slot moved on meanwhile
        img.src = objectUrl;
        img.decode().then(() => img.dataset.seq === seq && (img.dataset.loaded = "1"), () => {});
      },
      () => {},
    );
  }
}
