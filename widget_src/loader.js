/*! chatlead widget | MIT */
// The tag site owners paste (CONTRACT §13): it draws the launcher and nothing else, and
// fetches the chat UI (UI_FILE, a hashed, year-cached name) on the first hover, focus or
// click of the launcher, on window.chatlead.open(), on a resume link
// (#chatlead-resume=…), or after the page has loaded when the visitor left a chat open
// or has messages waiting to be sent. Never during page load otherwise.
//
// Embed: <script src="https://HOST/widget/chatlead.js" data-site="acme" async></script>
// Options: README "Embedding". The UI contract: the UI file defines
// window.__chatleadUI(ctx) and returns {open(focus), close()}; see ui/main.js.
import css from "./launcher.css";

const doc = document;
const win = window;
const SRC_RE = /\/widget\/chatlead(\.[0-9a-f]{10})?\.js([?#]|$)/;
const script =
  doc.currentScript || [...doc.querySelectorAll("script[src]")].find((s) => SRC_RE.test(s.src));

// once per page (a second embed is ignored); an element with id="chatlead" is no API
if (script && typeof (win.chatlead || {}).open !== "function") boot(script);

// Adopted sheets need no 'unsafe-inline' in a host page's style-src; <style> is the fallback.
function addSheet(root, text) {
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(text);
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  } catch {
    const style = doc.createElement("style");
    style.textContent = text;
    root.append(style);
  }
}

// The accent colour, and a foreground for it picked by contrast (WCAG relative luminance).
// A hex colour is read here; any other CSS colour is resolved by the browser later, when
// idle, as resolving it forces a style pass over the host page.
function accent(wrap, color, idle) {
  if (!color || !(win.CSS && CSS.supports("color", color))) return;
  wrap.style.setProperty("--a", color);
  const fg = (rgb) => {
    const lum = rgb
      .slice(0, 3)
      .map((v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
      .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
    wrap.style.setProperty("--af", 1.05 / (lum + 0.05) >= (lum + 0.05) / 0.05 ? "#fff" : "#111");
  };
  let hex = /^#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(color);
  if (hex) {
    hex = hex[1].length < 5 ? hex[1].replace(/./g, "$&$&") : hex[1];
    return fg([0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)));
  }
  idle(() => {
    const rgb = getComputedStyle(wrap.firstChild).backgroundColor.match(/[\d.]+/g);
    if (rgb) fg(rgb);
  });
}

// Attribution (CONTRACT §13): the ad parameters of the latest page that had any, and the
// visitor's first touch, kept for the UI's hello.attribution.
function attribute(ls) {
  const q = new URLSearchParams(location.search);
  const found = {};
  for (const k of "utm_source utm_medium utm_campaign utm_term utm_content gclid fbclid msclkid".split(" "))
    if (q.get(k)) found[k] = q.get(k).slice(0, 500);
  if (Object.keys(found).length) ls.setItem("chatlead:touch", JSON.stringify(found));
  if (!ls.getItem("chatlead:first"))
    ls.setItem(
      "chatlead:first",
      JSON.stringify({
        first_landing_page: location.href.slice(0, 2000),
        first_referrer: document.referrer.slice(0, 2000),
        first_seen: new Date().toISOString(),
      }),
    );
}

function boot(script) {
  const ds = script.dataset;
  const src = new URL(script.src, location.href);
  const base = src.origin + src.pathname.replace(/\/widget\/[^/]*$/, "");
  const lang = (ds.lang || doc.documentElement.lang || navigator.language || "en")
    .slice(0, 2)
    .toLowerCase();
  // the launcher's name until the UI, with all the texts, takes over
  const OPEN = {
    en: "Open chat",
    es: "Abrir chat",
    fr: "Ouvrir le chat",
    de: "Chat öffnen",
    pt: "Abrir chat",
    it: "Apri la chat",
    nl: "Chat openen",
    pl: "Otwórz czat",
    tr: "Sohbeti aç",
    ja: "チャットを開く",
    ar: "افتح الدردشة",
    he: "פתח צ'אט",
  };
  const site = ds.site || "default";

  const host = doc.createElement("chatlead-widget");
  if (ds.position === "left") host.className = "left";
  const root = host.attachShadow({ mode: "open" });
  const wrap = doc.createElement("aside");
  wrap.className = "w";
  // the launcher's two faces: a chat bubble, and a close cross while the panel is open
  wrap.innerHTML =
    '<button class="l" type="button" aria-expanded="false" aria-controls="p">' +
    '<svg class="b" viewBox="0 0 24 24" aria-hidden="true"><path d="M12 3C6.5 3 2 6.8 2 11.5c0 2.4 1.2 4.6 3.1 6.1L4.5 21l3.9-2c1.1.4 2.3.5 3.6.5 5.5 0 10-3.8 10-8.5S17.5 3 12 3z"/></svg>' +
    '<svg class="c" viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2.6" stroke-linecap="round" fill="none"/></svg>' +
    "<i hidden></i></button>";
  const launcher = wrap.firstChild;
  const badge = launcher.lastChild;

  let ui = null; // {open, close} once the UI file ran
  let tag = null; // the UI <script> while it loads
  let want = null; // what to do once loaded: {focus} to open
  let trigger = null;
  let resume = null;
  const ctx = {
    ds,
    site,
    base,
    lang,
    root,
    wrap,
    launcher,
    badge,
    get trigger() {
      return trigger;
    },
    set trigger(why) {
      trigger = why;
    },
    get resume() {
      return resume;
    },
    addSheet: (text) => addSheet(root, text),
    // the UI reports its state so the launcher's face and name follow it
    state(open, unread, name) {
      wrap.classList.toggle("o", open);
      launcher.setAttribute("aria-expanded", String(open));
      launcher.setAttribute("aria-label", name);
      badge.hidden = !unread;
    },
  };
  ctx.state(false, false, OPEN[lang] || OPEN.en);

  const js = (name) => {
    const s = doc.createElement("script");
    s.src = base + "/widget/" + name;
    doc.head.append(s);
    return s;
  };
  const load = () => {
    if (ui || tag) return;
    launcher.setAttribute("aria-busy", "true");
    tag = js(UI_FILE);
    tag.onload = () => {
      launcher.removeAttribute("aria-busy");
      const mount = win.__chatleadUI;
      if (typeof mount !== "function") return;
      ui = mount(ctx);
      if (want) ui.open(want.focus);
      want = null;
    };
    // offline or blocked: forget the tag, try again when the network is back or on the
    // next hover/click
    tag.onerror = () => {
      launcher.removeAttribute("aria-busy");
      tag.remove();
      tag = null;
    };
  };
  const open = (focus, why) => {
    draw();
    if (why && !trigger) trigger = why;
    if (ui) return ui.open(focus);
    want = { focus };
    load();
  };
  launcher.addEventListener("pointerenter", load);
  launcher.addEventListener("focus", load);
  launcher.addEventListener("click", () => {
    if (ui) return wrap.classList.contains("o") ? ui.close() : ui.open(true);
    open(true);
  });
  win.addEventListener("online", () => want && load());

  win.chatlead = {
    open: () => open(true, "api"),
    close: () => ui && ui.close(),
    // a user who signs in after the page loaded: their next chat carries it (§13)
    identify(id, hash) {
      ds.userId = id;
      ds.userHash = hash;
    },
    _c: ctx, // for the site's triggers script
  };

  // a resume link (CONTRACT §11): take the token out of the address bar, open at once
  const hash = /^#chatlead-resume=([^&]{1,512})$/.exec(location.hash);
  if (hash) {
    resume = decodeURIComponent(hash[1]);
    history.replaceState(history.state, "", location.pathname + location.search);
  }
  // The work is cut into short tasks so none of them blocks the host page; the chat to
  // restore is looked for once the page has loaded and the browser is idle (a first
  // localStorage read can take tens of ms on a phone).
  const idle = (fn) => (win.requestIdleCallback || setTimeout)(fn, { timeout: 2000 });
  const whenLoaded = (fn) =>
    doc.readyState === "complete" ? idle(fn) : win.addEventListener("load", () => idle(fn));
  const restore = () => {
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem("chatlead:" + site));
      attribute(localStorage);
    } catch {
      /* blocked storage: nothing to restore, no first touch to keep */
    }
    if (!saved || typeof saved !== "object") saved = {};
    // data-open opens on the first visit, until the visitor closes the panel once
    if (saved.open || (ds.open != null && ds.open !== "false" && saved.open !== false)) {
      if (!want) want = { focus: false };
      load();
    } else if ((saved.out && saved.out.length) || (saved.sid && saved.status === "open")) load();
  };
  // The launcher is drawn once the page has loaded and the browser is idle, so it is no
  // part of the page's own first rendering; opening the chat draws it at once.
  let drawn = false;
  function draw() {
    if (drawn) return;
    if (!doc.body) return doc.addEventListener("DOMContentLoaded", draw);
    drawn = true;
    addSheet(root, css);
    root.append(wrap);
    accent(wrap, ds.accent, idle);
    doc.body.append(host);
  }
  if (resume) setTimeout(() => open(false, "resume"));
  else
    whenLoaded(() => {
      draw();
      idle(restore);
      idle(() => js("triggers/" + site + ".js"));
    });
}
