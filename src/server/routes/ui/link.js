// Deep links: the view (timeline, seq, job, stages, layout, blend opacity, hidden overlay
// names) in the URL's hash, so a link opens exactly what its sender saw.
//
//   #tl=street-cam&seq=4512&job=job-7&a=detect&b=track&layout=side&opacity=0.5&hide=mask

export const LAYOUTS = ["single", "side", "blend"];

// The view a hash describes; missing or malformed parts are left out.
export function readLink(hash) {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  const view = {};
  if (p.get("tl")) view.timeline = p.get("tl");
  if (/^(0|[1-9][0-9]*)$/.test(p.get("seq") || "")) view.seq = Number(p.get("seq"));
  if (p.get("job")) view.job = p.get("job");
  if (p.has("a")) view.a = p.get("a");
  if (p.has("b")) view.b = p.get("b");
  if (LAYOUTS.includes(p.get("layout"))) view.layout = p.get("layout");
  const opacity = Number(p.get("opacity"));
  if (p.has("opacity") && opacity >= 0 && opacity <= 1) view.opacity = opacity;
  if (p.get("hide")) view.hidden = p.get("hide").split(",").filter(Boolean);
  return view;
}

// The hash of a view; parts at their defaults are left out, so plain links stay short.
export function writeLink(view) {
  const p = new URLSearchParams();
  p.set("tl", view.timeline);
  p.set("seq", String(view.seq));
  if (view.job) p.set("job", view.job);
  if (view.a) p.set("a", view.a);
  if (view.b) p.set("b", view.b);
  if (view.layout && view.layout !== "single") p.set("layout", view.layout);
  if (view.layout === "blend") p.set("opacity", String(view.opacity));
  const hidden = [...(view.hidden || [])].sort();
  if (hidden.length) p.set("hide", hidden.join(","));
  return "#" + p.toString();
}

// Copies `text` to the clipboard: the async API where the page may use it, else a
// selected text field and the copy command. Resolves to whether either worked.
export async function copyText(text) {
  try {
    // A browser may leave the request pending (a permission prompt nobody answers).
    const refused = new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), 2000));
    await Promise.race([navigator.clipboard.writeText(text), refused]);
    return true;
  } catch (_) {
    const field = document.createElement("textarea");
    field.value = text;
    field.style.position = "fixed";
    field.style.opacity = "0";
    document.body.append(field);
    field.select();
    let done = false;
    try {
      done = document.execCommand("copy");
    } catch (_) {
      done = false;
    }
    field.remove();
    return done;
  }
}
