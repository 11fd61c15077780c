/*! chatlead widget | MIT */
// Proactive openers (CONTRACT §13), served per site as /widget/triggers/<site>.js: the
// server writes the site's [[sites.<id>.triggers]] in place of __CHATLEAD_TRIGGERS__, and
// answers an empty script for a site without any, so a page whose site has none pays one
// tiny request and runs nothing. The loader fetches it once the page has loaded and the
// browser is idle, and hands over its context as window.chatlead._c.
//
// Each trigger is {id, message, texts ({lang: message}), after (s), scroll (%),
// exit_intent, url_contains, url_matches, every (s)}; every condition given must hold. When the last one does, the
// message shows as a bubble by the launcher (and the UI starts loading, so a click opens at
// once). A visitor sees each trigger at most once per `every` (kept in localStorage; without
// it, once per page view). A chat opened from the bubble, or from the launcher while the
// bubble shows, names the trigger in hello.trigger.
import css from "./triggers.css";

const DISMISS = {
  en: "Dismiss",
  es: "Descartar",
  fr: "Fermer",
  de: "Schließen",
  pt: "Dispensar",
  it: "Chiudi",
  nl: "Sluiten",
  pl: "Zamknij",
  tr: "Kapat",
  ja: "閉じる",
  ar: "إغلاق",
  he: "סגירה",
};

const api = window.chatlead;
const ctx = api && api._c;
const list = __CHATLEAD_TRIGGERS__;
if (ctx && list.length) watch(ctx, list);

function watch(ctx, list) {
  const key = "chatlead:t:" + ctx.site;
  let seen = {};
  try {
    seen = JSON.parse(localStorage.getItem(key)) || {};
  } catch {
    /* blocked storage: once per page view */
  }
  const url = location.href;
  const fine = matchMedia("(pointer: fine)").matches; // exit intent is a desktop gesture
  const due = list.filter(
    (t) =>
      !(Date.now() - (seen[t.id] || 0) < t.every * 1000) &&
      (!t.url_contains || url.includes(t.url_contains)) &&
      (!t.url_matches || new RegExp(t.url_matches).test(url)) &&
      (!t.exit_intent || fine),
  );
  if (!due.length) return;
  ctx.addSheet(css);

  let bubble = null;
  const hide = () => {
    if (bubble) bubble.remove();
    bubble = null;
  };
  // the panel opening (by any way) takes the bubble's place
  new MutationObserver(() => ctx.wrap.classList.contains("o") && hide()).observe(ctx.wrap, {
    attributes: true,
    attributeFilter: ["class"],
  });
  // the launcher clicked while the bubble shows: the trigger opened the chat
  ctx.launcher.addEventListener(
    "click",
    () => bubble && ((ctx.trigger = bubble.dataset.id), hide()),
    true,
  );

  const show = (t) => {
    if (bubble || ctx.wrap.classList.contains("o")) return;
    seen[t.id] = Date.now();
    try {
      localStorage.setItem(key, JSON.stringify(seen));
    } catch {
      /* blocked storage */
    }
    const lang = ctx.wrap.lang || ctx.lang;
    bubble = document.createElement("div");
    bubble.className = "t";
    bubble.dataset.id = t.id;
    bubble.setAttribute("role", "status");
    bubble.lang = lang;
    bubble.innerHTML = '<button class="tm" type="button"></button><button class="tx" type="button">×</button>';
    const [text, close] = bubble.children;
    text.textContent = (t.texts || {})[lang] || t.message;
    close.setAttribute("aria-label", DISMISS[lang] || DISMISS.en);
    text.onclick = () => ctx.launcher.click();
    close.onclick = hide;
    ctx.wrap.append(bubble);
    // the UI starts loading now, the way a hover on the launcher does
    ctx.launcher.dispatchEvent(new Event("pointerenter"));
  };

  for (const t of due) {
    const wait = new Set();
    const met = (what) => {
      wait.delete(what);
      if (!wait.size) show(t);
    };
    if (t.after) wait.add("after");
    if (t.scroll) wait.add("scroll");
    if (t.exit_intent) wait.add("exit");
    if (!wait.size) show(t);
    if (t.after) setTimeout(() => met("after"), Math.max(0, t.after * 1000 - performance.now()));
    if (t.scroll) {
      const onScroll = () => {
        const page = document.documentElement;
        if (((scrollY + innerHeight) / page.scrollHeight) * 100 >= t.scroll) {
          removeEventListener("scroll", onScroll);
          met("scroll");
        }
      };
      addEventListener("scroll", onScroll, { passive: true });
      onScroll();
    }
    if (t.exit_intent) {
      // the pointer leaves the page through its top edge, towards the tabs
      const onOut = (e) => {
        if (!e.relatedTarget && e.clientY <= 0) {
          document.removeEventListener("mouseout", onOut);
          met("exit");
        }
      };
      document.addEventListener("mouseout", onOut);
    }
  }
}
