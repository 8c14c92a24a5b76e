// Fetching for the viewer and the dashboard: the bearer token, JSON errors, and pools that
// fetch payloads a bounded number at a time into blob URLs.
//
// The viewer runs two pools: frames (the one on screen first, then read-ahead) and
// thumbnails. Their sizes add up to the six connections a browser opens to one host, so a
// frame never queues behind a thumbnail, and thumbnails are also fetched at low priority.

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const TOKEN_KEY = "framecache-token";

export const auth = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  // Called on a 401: the page shows its sign-in form.
  onUnauthorized: () => {},
  set(token) {
    this.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
  },
};

export async function api(path, init = {}) {
  const headers = auth.token ? { Authorization: "Bearer " + auth.token } : {};
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) {
    auth.onUnauthorized();
    throw new HttpError(401, "this server needs a token");
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error.message;
    } catch (_) {
      // not a JSON error: keep the status text
    }
    throw new HttpError(response.status, message);
  }
  return response;
}

// Fetches URLs into blob URLs, `parallel` at a time; each entry carries a numeric `tag`
// (a frame's seq) by which queued jobs are dropped and blob URLs released.
export class Pool {
  constructor(parallel, { priority = "auto", onChange = () => {} } = {}) {
    this.parallel = parallel;
    this.priority = priority;
    this.onChange = onChange;
    this.entries = new Map(); // url -> {promise, objectUrl, tag}
    this.queue = []; // [{url, resolve, reject}]
    this.active = 0;
    this.requests = 0; // fetches started
  }

  get pending() {
    return this.active + this.queue.length;
  }

  // The blob URL of `url`, fetched once; `urgent` puts it first in the queue.
  load(url, tag, urgent = false) {
    let entry = this.entries.get(url);
    if (entry) {
      if (urgent) this.promote(url);
      return entry.promise;
    }
    entry = { tag, objectUrl: null };
    entry.promise = new Promise((resolve, reject) => {
      const job = { url, resolve, reject };
      if (urgent) this.queue.unshift(job);
      else this.queue.push(job);
    });
    entry.promise.then(
      (objectUrl) => (entry.objectUrl = objectUrl),
      () => this.entries.get(url) === entry && this.entries.delete(url),
    );
    this.entries.set(url, entry);
    this.pump();
    return entry.promise;
  }

  promote(url) {
    const i = this.queue.findIndex((job) => job.url === url);
    if (i > 0) this.queue.unshift(...this.queue.splice(i, 1));
  }

  pump() {
    while (this.active < this.parallel && this.queue.length > 0) {
      const job = this.queue.shift();
      this.active += 1;
      this.requests += 1;
      api(job.url, { priority: this.priority })
        .then((response) => response.blob())
        .then((blob) => job.resolve(URL.createObjectURL(blob)), job.reject)
        .finally(() => {
          this.active -= 1;
          this.pump();
          this.onChange();
        });
    }
    this.onChange();
  }

  // Drops the queued jobs whose entry's tag fails `keep`.
  drop(keep) {
    this.queue = this.queue.filter((job) => {
      const entry = this.entries.get(job.url);
      if (!entry || keep(entry.tag)) return true;
      job.reject(new Error("no longer wanted"));
      return false;
    });
    this.onChange();
  }

  // Revokes the blob URLs whose tag fails `keep` (the browser cache still holds the bytes).
  release(keep) {
    for (const [url, entry] of this.entries) {
      if (entry.objectUrl && !keep(entry.tag)) {
        URL.revokeObjectURL(entry.objectUrl);
        this.entries.delete(url);
      }
    }
  }
}
