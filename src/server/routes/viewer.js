"use strict";
// The framecache viewer: lists timelines, shows one frame at a time with its seq, timestamp
// and chunk, scrubs (slider, arrow keys), plays at the frames' timestamps and draws the
// overlays of the enabled job/stage pairs on top.
//
// Frames are fetched by the versioned URLs the index gives (`?v=<content version>`), which
// the server marks immutable: once fetched, the browser's cache answers them without a
// request. A bounded window ahead of and behind the playhead is fetched in advance, a few
// at a time, the frame on screen first. Decoded copies (blob URLs) are kept only near the
// playhead; farther back the browser cache serves them again.
//
// For tests, the page reports its state on elements: #frame[data-seq] is the seq shown,
// #stage[data-overlays] the overlays drawn on it, body[data-pending] the fetches queued or
// running, body[data-requests] the fetches started.

const AHEAD = 24; // frames fetched in advance ahead of the playhead
const BEHIND = 8; // and behind it
const KEEP = 48; // blob URLs kept within this many frames of the playhead
const PARALLEL = 6; // fetches at once
const FALLBACK_FPS = 30; // pace of timelines without timestamps

const $ = (id) => document.getElementById(id);

const view = {
  token: sessionStorage.getItem("framecache-token") || "",
  timeline: null,
  frames: [],
  index: 0,
  showing: 0, // counter: a later show() supersedes an earlier one still loading
  playing: false,
  stages: [], // [{job, stage, url, key}]
  enabled: new Set(), // stage keys
  overlays: new Map(), // stage key -> Map(seq -> [{name, url}])
  blobs: new Map(), // url -> {promise, objectUrl, seq}
  queue: [], // [{url, seq, resolve, reject}]
  active: 0,
  requests: 0,
};

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function report() {
  document.body.dataset.pending = String(view.active + view.queue.length);
  document.body.dataset.requests = String(view.requests);
}

async function api(path) {
  const headers = view.token ? { Authorization: "Bearer " + view.token } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    $("login").hidden = false;
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

// --- fetching with bounded concurrency -------------------------------------------------

function load(url, seq, urgent) {
  let entry = view.blobs.get(url);
  if (entry) {
    if (urgent) promote(url);
    return entry.promise;
  }
  entry = { seq, objectUrl: null };
  entry.promise = new Promise((resolve, reject) => {
    const job = { url, seq, resolve, reject };
    if (urgent) view.queue.unshift(job);
    else view.queue.push(job);
  });
  entry.promise.then(
    (objectUrl) => (entry.objectUrl = objectUrl),
    () => view.blobs.delete(url),
  );
  view.blobs.set(url, entry);
  pump();
  return entry.promise;
}

function promote(url) {
  const i = view.queue.findIndex((job) => job.url === url);
  if (i > 0) view.queue.unshift(...view.queue.splice(i, 1));
}

function pump() {
  while (view.active < PARALLEL && view.queue.length > 0) {
    const job = view.queue.shift();
    view.active += 1;
    view.requests += 1;
    api(job.url)
      .then((response) => response.blob())
      .then((blob) => job.resolve(URL.createObjectURL(blob)), job.reject)
      .finally(() => {
        view.active -= 1;
        pump();
        report();
      });
  }
  report();
}

// Drops queued fetches outside the window and blob URLs far from the playhead.
function trim(index) {
  const seqOf = (i) => view.frames[Math.max(0, Math.min(view.frames.length - 1, i))].seq;
  const lo = seqOf(index - BEHIND), hi = seqOf(index + AHEAD);
  view.queue = view.queue.filter((job) => {
    if (job.seq >= lo && job.seq <= hi) return true;
    job.reject(new Error("outside the prefetch window"));
    return false;
  });
  const keepLo = seqOf(index - KEEP), keepHi = seqOf(index + KEEP);
  for (const [url, entry] of view.blobs) {
    if (entry.objectUrl && (entry.seq < keepLo || entry.seq > keepHi)) {
      URL.revokeObjectURL(entry.objectUrl);
      view.blobs.delete(url);
    }
  }
  report();
}

function prefetch(index) {
  trim(index);
  const wanted = [];
  for (let d = 1; d <= AHEAD; d += 1) {
    wanted.push(index + d);
    if (d <= BEHIND) wanted.push(index - d);
  }
  for (const i of wanted) {
    const frame = view.frames[i];
    if (!frame) continue;
    load(frame.url, frame.seq, false).catch(() => {});
    for (const o of overlaysOf(frame.seq)) load(o.url, frame.seq, false).catch(() => {});
  }
}

// --- showing a frame -------------------------------------------------------------------

function timeOf(i) {
  const f = view.frames;
  const timed = f.length > 1 && f[f.length - 1].timestamp > f[0].timestamp;
  return timed ? f[i].timestamp : i / FALLBACK_FPS;
}

function overlaysOf(seq) {
  const out = [];
  for (const key of view.enabled) {
    for (const o of view.overlays.get(key)?.get(seq) || []) out.push({ ...o, key });
  }
  return out;
}

async function show(index) {
  if (view.frames.length === 0) return;
  index = Math.max(0, Math.min(view.frames.length - 1, index));
  const ticket = ++view.showing;
  view.index = index;
  const frame = view.frames[index];
  $("slider").value = String(index);
  $("seq").textContent = String(frame.seq);
  $("time").textContent = frame.timestamp.toFixed(3);
  $("chunk").textContent = String(frame.chunk_id);
  $("position").textContent = `${index + 1} / ${view.frames.length}`;
  history.replaceState(null, "", `#tl=${encodeURIComponent(view.timeline)}&seq=${frame.seq}`);
  const shown = load(frame.url, frame.seq, true);
  prefetch(index);
  let objectUrl;
  try {
    objectUrl = await shown;
  } catch (err) {
    if (ticket === view.showing) setStatus(`frame ${frame.seq}: ${err.message}`, true);
    return;
  }
  if (ticket !== view.showing) return;
  const img = $("frame");
  img.src = objectUrl;
  await img.decode().catch(() => {});
  if (ticket !== view.showing) return;
  img.dataset.seq = String(frame.seq);
  await drawOverlays(frame.seq, ticket);
  if (ticket === view.showing && !$("status").classList.contains("error")) {
    setStatus(`${view.timeline} · ${view.frames.length} frames`);
  }
}

async function drawOverlays(seq, ticket) {
  const wanted = overlaysOf(seq);
  const images = await Promise.all(
    wanted.map(async (o) => {
      const img = new Image();
      img.className = "overlay";
      img.alt = `${o.key} ${o.name}`;
      img.dataset.stage = o.key;
      img.dataset.name = o.name;
      try {
        img.src = await load(o.url, seq, true);
        await img.decode();
        return img;
      } catch (_) {
        return null;
      }
    }),
  );
  if (ticket !== view.showing) return;
  const stage = $("stage");
  stage.querySelectorAll("img.overlay").forEach((el) => el.remove());
  const drawn = images.filter(Boolean);
  stage.append(...drawn);
  stage.dataset.overlays = String(drawn.length);
}

// --- playback --------------------------------------------------------------------------

function play() {
  if (view.frames.length < 2) return;
  if (view.index >= view.frames.length - 1) show(0);
  view.playing = true;
  $("play").textContent = "pause";
  const startWall = performance.now();
  const startIndex = view.index;
  const startTime = timeOf(startIndex);
  const tick = () => {
    if (!view.playing) return;
    const elapsed = (performance.now() - startWall) / 1000;
    let i = view.index;
    while (i + 1 < view.frames.length && timeOf(i + 1) - startTime <= elapsed) i += 1;
    if (i !== view.index) show(i);
    if (i >= view.frames.length - 1) pause();
    else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function pause() {
  view.playing = false;
  $("play").textContent = "play";
}

// --- timelines and overlays ------------------------------------------------------------

async function loadTimeline(id, seq) {
  pause();
  setStatus(`loading ${id}…`);
  const index = await (await api(`/v1/timelines/${encodeURIComponent(id)}`)).json();
  view.timeline = id;
  view.frames = index.frames;
  view.stages = index.overlays.map((s) => ({ ...s, key: `${s.job}/${s.stage}` }));
  view.enabled.clear();
  view.overlays.clear();
  renderStages();
  $("slider").max = String(Math.max(0, view.frames.length - 1));
  const start = view.frames.findIndex((f) => f.seq === seq);
  await show(start >= 0 ? start : 0);
  for (const warning of index.warnings || []) setStatus(warning, true);
}

function renderStages() {
  const box = $("stages");
  box.replaceChildren();
  if (view.stages.length === 0) {
    box.innerHTML = '<span class="none">none</span>';
    return;
  }
  for (const s of view.stages) {
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.dataset.stage = s.key;
    check.addEventListener("change", () => toggleStage(s, check.checked));
    label.append(check, ` ${s.job} / ${s.stage}`);
    box.append(label);
  }
}

async function toggleStage(s, on) {
  if (!on) {
    view.enabled.delete(s.key);
  } else {
    if (!view.overlays.has(s.key)) {
      try {
        const listing = await (await api(s.url)).json();
        const bySeq = new Map();
        for (const f of listing.frames) bySeq.set(f.seq, f.overlays);
        view.overlays.set(s.key, bySeq);
      } catch (err) {
        setStatus(`overlays ${s.key}: ${err.message}`, true);
        return;
      }
    }
    view.enabled.add(s.key);
  }
  await show(view.index);
}

async function start() {
  $("login").hidden = true;
  try {
    const { timelines } = await (await api("/v1/timelines")).json();
    const select = $("timeline");
    select.replaceChildren(
      ...timelines.map((id) => {
        const option = document.createElement("option");
        option.value = option.textContent = id;
        return option;
      }),
    );
    if (timelines.length === 0) {
      setStatus("no timelines yet");
      return;
    }
    const hash = new URLSearchParams(location.hash.slice(1));
    const wanted = hash.get("tl");
    const id = timelines.includes(wanted) ? wanted : timelines[0];
    select.value = id;
    await loadTimeline(id, Number(hash.get("seq")));
  } catch (err) {
    setStatus(err.message, true);
  }
}

// --- input -----------------------------------------------------------------------------

$("slider").addEventListener("input", (e) => {
  pause();
  show(Number(e.target.value));
});
$("play").addEventListener("click", () => (view.playing ? pause() : play()));
$("timeline").addEventListener("change", (e) => loadTimeline(e.target.value).catch((err) => setStatus(err.message, true)));
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  view.token = $("token").value.trim();
  sessionStorage.setItem("framecache-token", view.token);
  start();
});
document.addEventListener("keydown", (e) => {
  const target = e.target;
  if (target instanceof HTMLInputElement && target.type !== "checkbox" && target.type !== "range") return;
  if (target instanceof HTMLSelectElement) return;
  const step = e.shiftKey ? 10 : 1;
  const moves = {
    ArrowRight: view.index + step,
    ArrowLeft: view.index - step,
    Home: 0,
    End: view.frames.length - 1,
  };
  if (e.key in moves) {
    e.preventDefault();
    pause();
    show(moves[e.key]);
  } else if (e.key === " ") {
    e.preventDefault();
    view.playing ? pause() : play();
  }
});

report();
start();
