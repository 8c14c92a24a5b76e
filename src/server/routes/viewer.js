// The framecache viewer: lists timelines, shows one frame at a time with its seq, timestamp
// and chunk, scrubs (slider, arrow keys, filmstrip), plays at the frames' timestamps, and
// shows the overlays of a job's stages: one stage on the frame, two side by side, or two
// blended. The view lives in the URL's hash (see ui/link.js), so a copied link restores it.
//
// The index comes a page at a time (ui/pages.js): the first page opens the timeline, and
// the pages around the playhead and under the filmstrip's slots follow as they are needed,
// so an hour-long timeline never downloads its whole index. Positions (0 … total - 1) are
// what the slider, the keys and the filmstrip move over.
//
// Frames are fetched by the versioned URLs the index gives (`?v=<content version>`), which
// the server marks immutable: once fetched, the browser's cache answers them without a
// request. A bounded window ahead of and behind the playhead is fetched in advance, a few
// at a time, the frame on screen first. Decoded copies (blob URLs) are kept only near the
// playhead; farther back the browser cache serves them again. Thumbnails (ui/filmstrip.js)
// have a pool of their own, so the playhead never waits for them.
//
// For tests, the page reports its state on elements: #frame[data-seq] is the seq shown,
// #stage[data-overlays] the overlays drawn on it (#stage-b likewise for the second pane),
// body[data-pending] the frame fetches queued or running, body[data-requests] the frame
// fetches started, body[data-thumb-requests] and body[data-thumb-pending] the thumbnail
// fetches started and queued or running,
// body[data-index-requests] the index pages fetched, body[data-copied] the last link copied.
//
// Over 400 lines: this is the one view's state and its event wiring; the parts that stand
// alone (paging, fetching, the filmstrip, links, panes) are the modules under ui/.

import { api, auth, Pool } from "/ui/fetcher.js";
import { Filmstrip } from "/ui/filmstrip.js";
import { FrameIndex } from "/ui/pages.js";
import { drawPane } from "/ui/panes.js";
import { copyText, readLink, writeLink } from "/ui/link.js";

const AHEAD = 24; // frames fetched in advance ahead of the playhead
const BEHIND = 8; // and behind it
const KEEP = 48; // blob URLs kept within this many frames of the playhead
const FRAME_FETCHES = 4; // frames fetched at once; thumbnails take the other two connections
const THUMB_FETCHES = 2;
const FALLBACK_FPS = 30; // pace of timelines without timestamps

const $ = (id) => document.getElementById(id);

const view = {
  timeline: null,
  frames: new FrameIndex(""), // no timeline yet: no frames
  index: 0,
  showing: 0, // counter: a later show() supersedes an earlier one still loading
  playing: false,
  stages: [], // [{job, stage, url, key}]
  job: "",
  a: "", // stage of the first pane ("" = the bare frame)
  b: "", // stage of the second pane
  layout: "single",
  opacity: 0.5,
  hidden: new Set(), // overlay names switched off
  overlays: new Map(), // stage key -> Map(seq -> [{name, url}])
};

const frames = new Pool(FRAME_FETCHES, { onChange: report });
const thumbs = new Pool(THUMB_FETCHES, { priority: "low", onChange: report });
const filmstrip = new Filmstrip({
  near: $("near"),
  coarse: $("coarse"),
  pool: thumbs,
  onSeek: (index) => {
    pause();
    show(index);
  },
});

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function report() {
  document.body.dataset.pending = String(frames.pending);
  document.body.dataset.requests = String(frames.requests);
  document.body.dataset.thumbRequests = String(thumbs.requests);
  document.body.dataset.thumbPending = String(thumbs.pending);
  document.body.dataset.indexRequests = String(view.frames.requests);
}

auth.onUnauthorized = () => ($("login").hidden = false);

// --- what is shown -----------------------------------------------------------------------

// The seq at position `i` (clamped to the timeline), or `fallback` while its page is away.
function seqAt(i, fallback) {
  const frame = view.frames.at(Math.max(0, Math.min(view.frames.length - 1, i)));
  return frame ? frame.seq : fallback;
}

// The stage of each pane on screen.
function paneStages() {
  return view.layout === "single" ? [view.a] : [view.a, view.b];
}

function overlaysOf(stage, seq) {
  if (!stage) return [];
  const listing = view.overlays.get(`${view.job}/${stage}`);
  return (listing?.get(seq) || []).filter((o) => !view.hidden.has(o.name));
}

// Asks for the index pages the read-ahead window reaches into, and prefetches again once
// they are in if the playhead has not moved.
function loadAround(index) {
  for (const i of [index - BEHIND, index + AHEAD]) {
    if (i < 0 || i >= view.frames.length || view.frames.at(i)) continue;
    const pages = view.frames;
    pages.load(i).then(
      () => pages === view.frames && view.index === index && prefetch(index),
      () => {},
    );
  }
}

function prefetch(index) {
  const lo = seqAt(index - BEHIND, -Infinity), hi = seqAt(index + AHEAD, Infinity);
  frames.drop((seq) => seq >= lo && seq <= hi);
  const keepLo = seqAt(index - KEEP, -Infinity), keepHi = seqAt(index + KEEP, Infinity);
  frames.release((seq) => seq >= keepLo && seq <= keepHi);
  const wanted = [];
  for (let d = 1; d <= AHEAD; d += 1) {
    wanted.push(index + d);
    if (d <= BEHIND) wanted.push(index - d);
  }
  for (const i of wanted) {
    const frame = view.frames.at(i);
    if (!frame) continue;
    frames.load(frame.url, frame.seq).catch(() => {});
    for (const stage of paneStages()) {
      for (const o of overlaysOf(stage, frame.seq)) frames.load(o.url, frame.seq).catch(() => {});
    }
  }
}

// Seconds into the timeline at position `i`; undefined while its page is away.
function timeOf(i) {
  if (!view.frames.timed) return i / FALLBACK_FPS;
  return view.frames.at(i)?.timestamp;
}

function link() {
  return writeLink({ ...view, seq: view.frames.at(view.index)?.seq ?? 0 });
}

async function show(index) {
  if (view.frames.length === 0) return;
  index = Math.max(0, Math.min(view.frames.length - 1, index));
  const ticket = ++view.showing;
  view.index = index;
  $("slider").value = String(index);
  let frame = view.frames.at(index);
  if (!frame) {
    try {
      frame = await view.frames.load(index);
    } catch (err) {
      if (ticket === view.showing) setStatus(`index of ${view.timeline}: ${err.message}`, true);
      return;
    }
    if (ticket !== view.showing || !frame) return;
  }
  $("seq").textContent = String(frame.seq);
  $("time").textContent = frame.timestamp.toFixed(3);
  $("chunk").textContent = String(frame.chunk_id);
  $("position").textContent = `${index + 1} / ${view.frames.length}`;
  history.replaceState(null, "", link());
  const shown = frames.load(frame.url, frame.seq, true);
  prefetch(index);
  loadAround(index);
  filmstrip.setPlayhead(index);
  let frameUrl;
  try {
    frameUrl = await shown;
  } catch (err) {
    if (ticket === view.showing) setStatus(`frame ${frame.seq}: ${err.message}`, true);
    return;
  }
  const panes = [$("stage"), $("stage-b")];
  const drawn = await Promise.all(
    paneStages().map((stage, i) =>
      drawPane(panes[i], {
        seq: frame.seq,
        frameUrl,
        stage: stage ? `${view.job}/${stage}` : "",
        overlays: overlaysOf(stage, frame.seq),
        load: (url) => frames.load(url, frame.seq, true),
        stillWanted: () => ticket === view.showing,
      }),
    ),
  );
  if (drawn.every(Boolean) && !$("status").classList.contains("error")) {
    setStatus(`${view.timeline} · ${view.frames.length} frames`);
  }
}

// --- playback --------------------------------------------------------------------------

function play() {
  if (view.frames.length < 2) return;
  if (view.index >= view.frames.length - 1) show(0);
  view.playing = true;
  $("play").textContent = "pause";
  const startWall = performance.now();
  const startTime = timeOf(view.index);
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

// --- stages, layout and overlay names --------------------------------------------------

function options(select, values, labels) {
  select.replaceChildren(
    ...values.map((value, i) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = labels[i];
      return option;
    }),
  );
}

function stagesOf(job) {
  return view.stages.filter((s) => s.job === job).map((s) => s.stage);
}

// Fills the job and stage pickers from view.stages and the current choice.
function renderPickers() {
  const jobs = [...new Set(view.stages.map((s) => s.job))];
  if (jobs.length === 0) {
    options($("job"), [""], ["none"]);
  } else {
    options($("job"), jobs, jobs);
  }
  $("job").value = view.job;
  const stages = stagesOf(view.job);
  options($("stage-a"), ["", ...stages], ["none (bare frame)", ...stages]);
  options($("stage-b-pick"), ["", ...stages], ["bare frame", ...stages]);
  $("stage-a").value = view.a;
  $("stage-b-pick").value = view.b;
  for (const button of $("layouts").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.layout === view.layout));
  }
  $("view").dataset.layout = view.layout;
  $("opacity-row").hidden = view.layout !== "blend";
  $("opacity").value = String(view.opacity);
  $("view").style.setProperty("--blend", String(view.opacity));
}

// Loads the overlay listings of the stages on screen.
async function loadListings() {
  for (const stage of paneStages()) {
    const key = `${view.job}/${stage}`;
    const s = view.stages.find((x) => x.key === key);
    if (!stage || !s || view.overlays.has(key)) continue;
    try {
      const listing = await (await api(s.url)).json();
      const bySeq = new Map();
      for (const f of listing.frames) bySeq.set(f.seq, f.overlays);
      view.overlays.set(key, bySeq);
    } catch (err) {
      setStatus(`overlays ${key}: ${err.message}`, true);
    }
  }
  renderNames();
}

// One toggle per overlay name found in the stages on screen.
function renderNames() {
  const names = new Set();
  for (const stage of paneStages()) {
    for (const list of view.overlays.get(`${view.job}/${stage}`)?.values() || []) {
      for (const o of list) names.add(o.name);
    }
  }
  const box = $("names");
  if (names.size === 0) {
    box.innerHTML = '<span class="none">none</span>';
    return;
  }
  box.replaceChildren(
    ...[...names].sort().map((name) => {
      const label = document.createElement("label");
      const check = document.createElement("input");
      check.type = "checkbox";
      check.dataset.name = name;
      check.checked = !view.hidden.has(name);
      check.addEventListener("change", () => {
        if (check.checked) view.hidden.delete(name);
        else view.hidden.add(name);
        show(view.index);
      });
      label.append(check, ` ${name}`);
      return label;
    }),
  );
}

// Applies a change of job, stages or layout, then redraws.
async function choose(change) {
  Object.assign(view, change);
  if (!stagesOf(view.job).includes(view.a)) view.a = "";
  if (!stagesOf(view.job).includes(view.b)) view.b = "";
  renderPickers();
  await loadListings();
  await show(view.index);
}

// --- timelines -------------------------------------------------------------------------

async function loadTimeline(id, wanted = {}) {
  pause();
  setStatus(`loading ${id}…`);
  const index = new FrameIndex(id);
  index.onPage = report;
  const start = await index.open(wanted.seq);
  view.timeline = id;
  view.frames = index;
  view.stages = index.overlays.map((s) => ({ ...s, key: `${s.job}/${s.stage}` }));
  view.overlays.clear();
  const jobs = view.stages.map((s) => s.job);
  view.job = jobs.includes(wanted.job) ? wanted.job : jobs[0] || "";
  view.a = wanted.a || "";
  view.b = wanted.b || "";
  view.layout = wanted.layout || "single";
  view.opacity = wanted.opacity ?? 0.5;
  view.hidden = new Set(wanted.hidden || []);
  $("slider").max = String(Math.max(0, view.frames.length - 1));
  filmstrip.setFrames(view.frames);
  view.index = start;
  report();
  await choose({});
  for (const warning of index.warnings) setStatus(warning, true);
}

async function start() {
  $("login").hidden = true;
  try {
    const { timelines } = await (await api("/v1/timelines")).json();
    options($("timeline"), timelines, timelines);
    if (timelines.length === 0) {
      setStatus("no timelines yet");
      return;
    }
    const wanted = readLink(location.hash);
    const id = timelines.includes(wanted.timeline) ? wanted.timeline : timelines[0];
    $("timeline").value = id;
    await loadTimeline(id, wanted);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function copyLink() {
  const url = location.href;
  document.body.dataset.copied = url;
  const done = await copyText(url);
  setStatus(done ? "link copied" : `copy this link: ${url}`, !done);
}

// --- input -----------------------------------------------------------------------------

$("slider").addEventListener("input", (e) => {
  pause();
  show(Number(e.target.value));
});
$("play").addEventListener("click", () => (view.playing ? pause() : play()));
$("timeline").addEventListener("change", (e) =>
  loadTimeline(e.target.value).catch((err) => setStatus(err.message, true)),
);
$("job").addEventListener("change", (e) => choose({ job: e.target.value, a: "", b: "" }));
$("stage-a").addEventListener("change", (e) => choose({ a: e.target.value }));
$("stage-b-pick").addEventListener("change", (e) => choose({ b: e.target.value }));
$("layouts").addEventListener("click", (e) => {
  const layout = e.target.closest("button")?.dataset.layout;
  if (layout) choose({ layout });
});
$("opacity").addEventListener("input", (e) => {
  view.opacity = Number(e.target.value);
  $("view").style.setProperty("--blend", String(view.opacity));
  history.replaceState(null, "", link());
});
$("copy-link").addEventListener("click", copyLink);
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  auth.set($("token").value.trim());
  start();
});
window.addEventListener("hashchange", () => {
  // A link pasted into this tab: restore it unless it is the view already shown.
  if (location.hash !== link()) start();
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
  } else if (e.key === "l" || e.key === "L") {
    e.preventDefault();
    copyLink();
  }
});

report();
start();
