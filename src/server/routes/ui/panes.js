// The panes the frame is shown in: one, two side by side, or two blended (the second on
// top of the first at the opacity chosen). Each pane is the frame with the overlays of one
// stage (or none: the bare frame), minus the overlay names switched off.
//
// For tests, a pane carries data-stage (its `job/stage`, empty for the bare frame),
// data-seq once drawn and data-overlays (how many overlays it shows); each overlay <img>
// carries data-stage and data-name.

// Draws frame `seq` (blob URL `frameUrl`) with `overlays` ([{url, name}]) into `pane`;
// `load` turns an overlay URL into a blob URL. Returns false when `stillWanted()` turned
// false meanwhile (a later frame superseded this one), leaving the pane as it was.
export async function drawPane(pane, { seq, frameUrl, stage, overlays, load, stillWanted }) {
  const images = await Promise.all(
    overlays.map(async (o) => {
      const img = new Image();
      img.className = "overlay";
      img.alt = `${stage} ${o.name}`;
      img.dataset.stage = stage;
      img.dataset.name = o.name;
      try {
        img.src = await load(o.url);
        await img.decode();
        return img;
      } catch (_) {
        return null;
      }
    }),
  );
  if (!stillWanted()) return false;
  const frame = pane.querySelector("img.frame");
  if (frame.src !== frameUrl) {
    frame.src = frameUrl;
    await frame.decode().catch(() => {});
    if (!stillWanted()) return false;
  }
  pane.querySelectorAll("img.overlay").forEach((el) => el.remove());
  const drawn = images.filter(Boolean);
  pane.append(...drawn);
  pane.dataset.stage = stage;
  pane.dataset.overlays = String(drawn.length);
  pane.querySelector(".label").textContent = stage || "frame";
  frame.dataset.seq = String(seq);
  pane.dataset.seq = String(seq);
  return true;
}
