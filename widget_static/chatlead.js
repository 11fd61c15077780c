/*! chatlead widget | MIT */
// Embed: <script src="https://HOST/widget/chatlead.js" data-site="acme" async></script>
// Options: data-title, data-greeting (header subtitle), data-accent (CSS colour),
// data-position (right|left), data-lang (en|es), data-open (open on first load).
// API: window.chatlead.open(), window.chatlead.close().
// Protocol: docs/PROTOCOL.md (hello/welcome, message/field + ack, resume by last_seq).
(() => {
  "use strict";
  const doc = document;
  const SRC_RE = /\/widget\/chatlead(\.[0-9a-f]{10})?\.js([?#]|$)/;
  const script =
    doc.currentScript ||
    [...doc.querySelectorAll("script[src]")].find((s) => SRC_RE.test(s.src));
  // once per page (a second embed is ignored); an element with id="chatlead" is no API
  if (!script || typeof (window.chatlead || {}).open === "function") return;

  // --- options (data-* attributes) -----------------------------------------
  const ds = script.dataset;
  const src = new URL(script.src, location.href);
  const site = ds.site || "default";
  const prefix = src.pathname.replace(/\/widget\/[^/]*$/, "");
  const WS_URL =
    src.origin.replace(/^http/, "ws") + prefix + "/ws?site=" + encodeURIComponent(site);
  const STRINGS = {
    en: {
      title: "Chat with us",
      open: "Open chat",
      unread: "Open chat, new message",
      close: "Close chat",
      log: "Conversation",
      send: "Send",
      skip: "Skip",
      skipped: "Skipped",
      you: "You:",
      them: "Reply:",
      sending: "Sending…",
      connecting: "Connecting…",
      offline: "Offline. Your messages will be sent when we reconnect.",
      unavailable: "Chat is unavailable right now.",
      slow: "Sending too fast. Retrying in a moment…",
      done: "This chat has ended.",
      restart: "Start a new conversation",
      replies: "Quick replies",
      text: "Type your message",
      name: "Your name",
      email: "Your email address",
      phone: "Your phone number",
      company: "Your company",
      choice: "Your answer",
    },
    es: {
      title: "Chatea con nosotros",
      open: "Abrir chat",
      unread: "Abrir chat, mensaje nuevo",
      close: "Cerrar chat",
      log: "Conversación",
      send: "Enviar",
      skip: "Omitir",
      skipped: "Omitido",
      you: "Tú:",
      them: "Respuesta:",
      sending: "Enviando…",
      connecting: "Conectando…",
      offline: "Sin conexión. Tus mensajes se enviarán al reconectar.",
      unavailable: "El chat no está disponible ahora.",
      slow: "Demasiado rápido. Reintentando en un momento…",
      done: "Este chat ha terminado.",
      restart: "Empezar una conversación nueva",
      replies: "Respuestas rápidas",
      text: "Escribe tu mensaje",
      name: "Tu nombre",
      email: "Tu correo electrónico",
      phone: "Tu número de teléfono",
      company: "Tu empresa",
      choice: "Tu respuesta",
    },
  };
  const lang = (ds.lang || doc.documentElement.lang || "en").slice(0, 2).toLowerCase();
  const T = STRINGS[lang] || STRINGS.en;
  const INPUT_HINTS = {
    email: ["email", "email", "email"],
    phone: ["tel", "tel", "tel"],
    name: ["text", "name", "text"],
    company: ["text", "organization", "text"],
  };

  // --- storage: session, cached transcript, unacked frames ------------------
  const KEY = "chatlead:" + site;
  const load = (k) => {
    try {
      return JSON.parse(localStorage.getItem(k));
    } catch {
      return null;
    }
  };
  const store = (k, v) => {
    try {
      if (v == null) localStorage.removeItem(k);
      else localStorage.setItem(k, JSON.stringify(v));
    } catch {
      /* storage full or blocked: keep working in memory */
    }
  };
  const uuid = () =>
    crypto.randomUUID
      ? crypto.randomUUID()
      : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
          (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
        );
  let uid = load("chatlead:uid");
  if (typeof uid !== "string") store("chatlead:uid", (uid = uuid()));
  // st: {sid, token, seq, status, prompt, msgs: [{seq, from, text}], out: [frame],
  //      asked: {frame id: prompt it answers}, open}
  const fresh = (open) => ({ msgs: [], out: [], asked: {}, open });
  let st = load(KEY);
  st = { ...fresh(), ...(st && typeof st === "object" ? st : {}) };
  if (!Array.isArray(st.msgs) || !Array.isArray(st.out) || !st.asked) st = fresh(st.open);
  const save = () => {
    st.msgs = st.msgs.slice(-200);
    store(KEY, st);
  };

  // --- DOM -------------------------------------------------------------------
  const el = (tag, cls, text) => {
    const e = doc.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  };
  const ICON_CHAT =
    '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
  const ICON_CLOSE =
    '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" fill="none"/></svg>';
  const ICON_SEND =
    '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M3 20l18-8L3 4v6l12 2-12 2z"/></svg>';

  const host = el("chatlead-widget");
  const root = host.attachShadow({ mode: "open" });
  const SHEET = `
:host{all:initial!important;display:block!important;position:fixed!important;z-index:2147483000!important;bottom:0!important;${ds.position === "left" ? "left" : "right"}:0!important;width:0!important;height:0!important;visibility:visible!important;opacity:1!important;transform:none!important;filter:none!important}
*{box-sizing:border-box;margin:0;padding:0;font:inherit;color:inherit;letter-spacing:normal;text-transform:none}
.w{--a:#0b5cc2;--af:#fff;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1b1f24;text-align:left;direction:ltr;position:absolute;bottom:0;${ds.position === "left" ? "left" : "right"}:0}
button{cursor:pointer;border:0;background:none}
:focus-visible{outline:3px solid #1b1f24;outline-offset:2px;box-shadow:0 0 0 5px #fff}
svg{width:24px;height:24px;fill:currentColor;display:block}
.sr{position:absolute!important;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.l{position:absolute;bottom:20px;${ds.position === "left" ? "left" : "right"}:20px;width:60px;height:60px;border-radius:50%;background:var(--a);color:var(--af);display:grid;place-items:center;box-shadow:0 6px 20px rgba(0,0,0,.25)}
.l svg{width:28px;height:28px}
.l i{position:absolute;top:4px;right:4px;width:14px;height:14px;border-radius:50%;background:#c4122f;border:2px solid #fff}
.p{position:absolute;bottom:92px;${ds.position === "left" ? "left" : "right"}:20px;width:370px;height:min(580px,calc(100vh - 112px));display:flex;flex-direction:column;background:#fff;border-radius:14px;overflow:hidden;box-shadow:0 12px 40px rgba(0,0,0,.28);border:1px solid #d0d5db}
.p[hidden],[hidden]{display:none!important}
header{background:var(--a);color:var(--af);padding:14px 12px 14px 18px;display:flex;align-items:center;gap:8px}
header div{flex:1;min-width:0}
h2{font-size:17px;font-weight:700;line-height:1.3}
header p{font-size:13px;opacity:.95}
.x{color:var(--af);width:40px;height:40px;border-radius:8px;display:grid;place-items:center}
.n{padding:6px 16px;font-size:13px;background:#fff4d6;color:#4a3800;border-bottom:1px solid #ecd9a0}
.g{flex:1;overflow-y:auto;padding:16px;display:flex;flex-direction:column;gap:8px;background:#f6f7f9}
.m{max-width:85%;padding:9px 13px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid #dde1e6;align-self:flex-start;border-bottom-left-radius:4px}
.m.visitor{align-self:flex-end;background:var(--a);color:var(--af);border-color:transparent;border-radius:16px 16px 4px 16px}
.m.wait{opacity:.75}
.m em{font-style:italic}
.q{display:flex;flex-wrap:wrap;gap:8px;padding:0 16px 10px;background:#f6f7f9}
.q button{border:2px solid var(--a);color:#1b1f24;background:#fff;border-radius:18px;padding:6px 14px;font-weight:600}
.q button:hover{background:#eef3fb}
form{border-top:1px solid #d0d5db;padding:10px;display:flex;gap:8px;align-items:center;flex-wrap:wrap;background:#fff}
input{flex:1;min-width:0;height:44px;border:1px solid #6b7480;border-radius:10px;padding:0 12px;background:#fff;color:#1b1f24;font-size:16px}
input::placeholder{color:#5f6670}
input[aria-invalid=true]{border:2px solid #b3261e}
.s{height:44px;min-width:44px;border-radius:10px;background:var(--a);color:var(--af);display:grid;place-items:center}
.k{height:44px;padding:0 12px;border-radius:10px;border:1px solid #6b7480;color:#1b1f24;background:#fff;font-weight:600}
.e{flex-basis:100%;color:#b3261e;font-size:13px;font-weight:600;padding:0 4px}
.d{padding:14px 16px;border-top:1px solid #d0d5db;text-align:center;display:flex;flex-direction:column;gap:10px;background:#fff}
.d button{align-self:center;border:2px solid var(--a);border-radius:10px;padding:8px 14px;font-weight:600}
@media (prefers-reduced-motion:no-preference){.p{animation:in .18s ease-out}.l{transition:transform .15s}.l:hover{transform:scale(1.06)}@keyframes in{from{opacity:0;transform:translateY(12px)}}}
@media (max-width:479.98px){.p{position:fixed;inset:0;width:auto;height:auto;border-radius:0;border:0}.w.o .l{display:none}}
`;
  const style = el("style", "", SHEET);
  const wrap = el("aside", "w");
  wrap.lang = STRINGS[lang] ? lang : "en";
  wrap.setAttribute("aria-label", ds.title || T.title);
  wrap.innerHTML = `<button class="l" type="button" aria-expanded="false" aria-controls="p">${ICON_CHAT}<i hidden></i></button>
<section class="p" id="p" role="dialog" aria-labelledby="h" hidden>
<header><div><h2 id="h"></h2><p id="sub"></p></div><button class="x" type="button">${ICON_CLOSE}</button></header>
<p class="n" role="status" hidden></p>
<div class="g" role="log" aria-live="polite" tabindex="0"></div>
<div class="q" role="group" hidden></div>
<div class="d" hidden><p></p><button type="button"></button></div>
<form novalidate><label class="sr" for="i"></label><input id="i" maxlength="1000" aria-describedby="e"><button class="k" type="button" hidden></button><button class="s" type="submit">${ICON_SEND}</button><p class="e" id="e" role="alert" hidden></p></form>
</section>`;
  const $ = (s) => wrap.querySelector(s);
  const launcher = $(".l");
  const badge = $(".l i");
  const panel = $(".p");
  const net = $(".n");
  const logEl = $(".g");
  const choices = $(".q");
  const doneBox = $(".d");
  const form = $("form");
  const label = $("label");
  const input = $("input");
  const skipBtn = $(".k");
  const errEl = $(".e");
  $("h2").textContent = ds.title || T.title;
  $("#sub").textContent = ds.greeting || "";
  $("#sub").hidden = !ds.greeting;
  $(".x").setAttribute("aria-label", T.close);
  $(".s").setAttribute("aria-label", T.send);
  logEl.setAttribute("aria-label", T.log);
  choices.setAttribute("aria-label", T.replies);
  skipBtn.textContent = T.skip;
  doneBox.firstChild.textContent = T.done;
  doneBox.lastChild.textContent = T.restart;
  root.append(style, wrap);

  // Accent colour: foreground picked for contrast (WCAG relative luminance).
  const setAccent = (color) => {
    if (!color || !(window.CSS && CSS.supports("color", color))) return;
    wrap.style.setProperty("--a", color);
    const probe = getComputedStyle(launcher).backgroundColor.match(/[\d.]+/g);
    if (!probe) return;
    const lum = probe
      .slice(0, 3)
      .map((v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
      .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
    wrap.style.setProperty("--af", 1.05 / (lum + 0.05) >= (lum + 0.05) / 0.05 ? "#fff" : "#111");
  };

  // --- rendering --------------------------------------------------------------
  const bySeq = new Map(); // seq -> bubble
  const byId = new Map(); // client frame id -> pending visitor bubble
  let prompt = null;
  let unread = false;

  const bubble = (from, text) => {
    const b = el("div", "m " + (from === "visitor" ? "visitor" : "bot"));
    b.append(el("span", "sr", from === "visitor" ? T.you : T.them + " "));
    if (text) b.append(text);
    else b.append(el("em", "", T.skipped));
    return b;
  };
  // Follow the conversation unless the visitor scrolled up to read.
  let pinned = true;
  let auto = false;
  const scrollDown = () => {
    auto = true;
    logEl.scrollTop = logEl.scrollHeight;
  };
  logEl.onscroll = () => {
    if (auto) auto = false;
    else pinned = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
  };
  new ResizeObserver(() => pinned && scrollDown()).observe(logEl);
  const place = (b, seq) => {
    b.dataset.seq = seq;
    bySeq.set(seq, b);
    // keep seq order; pending (unsequenced) bubbles stay last
    const after = [...logEl.children].find((c) => !c.dataset.seq || +c.dataset.seq > seq);
    logEl.insertBefore(b, after || null);
  };
  const remember = (m) => {
    if (!st.msgs.some((x) => x.seq === m.seq)) {
      st.msgs.push({ seq: m.seq, from: m.from, text: m.text });
      st.msgs.sort((a, b) => a.seq - b.seq);
    }
    if (m.seq > (st.seq || 0)) st.seq = m.seq;
  };
  // Render a server message once (dedupe by seq); match it to a pending bubble.
  const addMessage = (m, live) => {
    if (typeof m.seq !== "number" || bySeq.has(m.seq)) return;
    if (m.from === "visitor") {
      const mine = [...byId.values()].find((b) => !b.dataset.seq && b.dataset.text === m.text);
      if (mine) {
        mine.dataset.seq = m.seq;
        bySeq.set(m.seq, mine);
        remember(m);
        return;
      }
    }
    place(bubble(m.from, m.text), m.seq);
    remember(m);
    if (live && m.from !== "visitor" && panel.hidden) {
      unread = true;
      updateLauncher();
    }
    if (pinned) scrollDown();
  };
  const addPending = (id, text) => {
    const b = bubble("visitor", text);
    b.classList.add("wait");
    b.dataset.text = text;
    b.title = T.sending;
    byId.set(id, b);
    logEl.append(b);
    scrollDown();
  };
  const acked = (id, seq) => {
    const b = byId.get(id);
    byId.delete(id);
    if (!b) return;
    if (bySeq.has(seq) && bySeq.get(seq) !== b) return b.remove();
    b.classList.remove("wait");
    b.removeAttribute("title");
    if (!b.dataset.seq) {
      b.remove();
      place(b, seq);
    }
    remember({ seq, from: "visitor", text: b.dataset.text });
  };

  const setPrompt = (p) => {
    prompt = p && typeof p.field === "string" ? p : null;
    st.prompt = prompt;
    const kind = prompt ? prompt.kind : "text";
    const hint = INPUT_HINTS[kind] || ["text", "off", "text"];
    input.type = hint[0];
    input.autocomplete = hint[1];
    input.inputMode = hint[2];
    label.textContent = T[kind] || T.text;
    input.placeholder = label.textContent + "…";
    skipBtn.hidden = !(prompt && prompt.optional);
    const hadFocus = root.activeElement && choices.contains(root.activeElement);
    choices.replaceChildren();
    const opts = prompt && Array.isArray(prompt.options) ? prompt.options : [];
    for (const o of opts) {
      // an option is {label, value}: the visitor says the label, the server stores the value
      const label = String(o && o.label !== undefined ? o.label : o);
      const b = el("button", "", label);
      b.type = "button";
      b.onclick = () => send(label);
      choices.append(b);
    }
    choices.hidden = !opts.length;
    if (hadFocus) input.focus();
  };
  const showError = (text) => {
    errEl.textContent = text ? text[0].toUpperCase() + text.slice(1) : "";
    errEl.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  const setFinished = (done) => {
    st.status = done ? "completed" : st.status;
    const focusWasIn = form.contains(root.activeElement);
    form.hidden = done;
    doneBox.hidden = !done;
    if (done) {
      choices.hidden = true;
      if (focusWasIn) doneBox.lastChild.focus();
    }
  };
  // "Connecting…" only shows when it takes a while; other states show at once.
  let netTimer = 0;
  const setNet = (state) => {
    clearTimeout(netTimer);
    wrap.dataset.net = state;
    const show = () => {
      net.textContent = T[state] || "";
      net.hidden = !T[state]; // "online" and "idle" have no banner
    };
    if (state === "connecting" && net.hidden) netTimer = setTimeout(show, 1000);
    else show();
  };
  const updateLauncher = () => {
    launcher.setAttribute("aria-label", unread ? T.unread : T.open);
    badge.hidden = !unread;
  };

  // --- panel -------------------------------------------------------------------
  const openPanel = (focus) => {
    panel.hidden = false;
    wrap.classList.add("o");
    launcher.setAttribute("aria-expanded", "true");
    unread = false;
    updateLauncher();
    st.open = true;
    save();
    connect();
    scrollDown();
    if (focus) (stopped ? $(".x") : form.hidden ? doneBox.lastChild : input).focus();
  };
  const closePanel = () => {
    panel.hidden = true;
    wrap.classList.remove("o");
    launcher.setAttribute("aria-expanded", "false");
    st.open = false;
    save();
    launcher.focus();
  };
  launcher.onclick = () => (panel.hidden ? openPanel(true) : closePanel());
  $(".x").onclick = closePanel;
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      closePanel();
    }
  });

  // --- sending -----------------------------------------------------------------
  const send = (raw, skipping) => {
    const text = raw.trim();
    if (!text && !(skipping && prompt)) return;
    const id = uuid();
    const frame = prompt
      ? { type: "field", id, name: prompt.field, value: text }
      : { type: "message", id, text };
    if (prompt) st.asked[id] = prompt;
    addPending(id, text);
    input.value = "";
    showError("");
    setPrompt(null);
    st.out.push(frame);
    save();
    input.focus();
    if (ready) transmit(frame);
    else connect();
  };
  form.onsubmit = (e) => {
    e.preventDefault();
    send(input.value);
  };
  skipBtn.onclick = () => send("", true);
  doneBox.lastChild.onclick = () => {
    st = fresh(true);
    save();
    bySeq.clear();
    byId.clear();
    logEl.replaceChildren();
    setFinished(false);
    setPrompt(null);
    input.focus();
    const sock = ws;
    ws = null;
    ready = false;
    if (sock) sock.close(1000);
    connect();
  };

  // --- connection --------------------------------------------------------------
  let ws = null;
  let ready = false; // welcome received on the current socket
  let tries = 0;
  let timer = 0;
  let stopped = false;
  let lastRx = 0;
  const transmit = (frame) => {
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      /* the socket closed; the frame stays queued */
    }
  };
  const flush = () => st.out.forEach(transmit);
  const retry = (delay) => {
    clearTimeout(timer);
    // messages waiting to go out: try at least every 5 s, so they leave soon after the
    // server is back; otherwise back off up to 30 s
    if (delay == null) delay = Math.min(st.out.length ? 5000 : 30000, 400 * 2 ** tries++);
    // jitter: 50-100 % of the delay, so many widgets do not return in lockstep
    timer = setTimeout(connect, delay * (0.5 + Math.random() / 2));
  };
  const hello = () => {
    const h = {
      type: "hello",
      site,
      user_id: uid,
      page: {
        url: location.href.slice(0, 2000),
        title: doc.title.slice(0, 200),
        referrer: doc.referrer.slice(0, 2000),
      },
    };
    if (st.sid && st.token) {
      h.session_id = st.sid;
      h.resume_token = st.token;
      h.last_seq = st.seq || 0;
    }
    return h;
  };
  function connect() {
    if (stopped || ws) return;
    clearTimeout(timer);
    timer = 0;
    setNet("connecting");
    let sock;
    try {
      sock = ws = new WebSocket(WS_URL);
    } catch {
      ws = null;
      return retry();
    }
    sock.onopen = () => {
      lastRx = Date.now();
      sock.send(JSON.stringify(hello()));
    };
    sock.onmessage = (e) => {
      lastRx = Date.now();
      let f;
      try {
        f = JSON.parse(e.data);
      } catch {
        return;
      }
      if (f && HANDLERS[f.type]) HANDLERS[f.type](f);
    };
    sock.onclose = (e) => {
      if (ws !== sock) return;
      ws = null;
      ready = false;
      onClosed(e.code);
    };
  }
  const stop = () => {
    const focusWasIn = form.contains(root.activeElement);
    stopped = true;
    setNet("unavailable");
    form.hidden = choices.hidden = true;
    if (focusWasIn) $(".x").focus();
  };
  const onClosed = (code) => {
    if (code === 4404) return stop();
    // 1000: the server let an idle, finished chat go; sending connects again
    if (code === 1000) return setNet("idle");
    setNet("offline");
    // 4429 too many / 1008 policy (e.g. origin refused): retrying soon cannot help
    if (code === 4429 || code === 1008) retry(60000 + tries++ * 30000);
    else if (code === 1012) retry(tries++ ? null : 800);
    else retry();
  };
  const drop = () => {
    // a socket that went silent: forget it now instead of waiting for TCP
    const sock = ws;
    ws = null;
    ready = false;
    if (sock) sock.close();
    onClosed(1006);
  };
  setInterval(() => {
    if (!ws || ws.readyState !== 1) return;
    if (Date.now() - lastRx > 60000) return drop();
    transmit({ type: "ping" });
  }, 25000);
  const wake = () => {
    if (!ws && !stopped && (st.sid || !panel.hidden)) connect();
  };
  addEventListener("online", wake);
  doc.addEventListener("visibilitychange", () => doc.visibilityState === "visible" && wake());

  // Another tab of this site moved the conversation on: show what it saw.
  addEventListener("storage", (e) => {
    const o = e.key === KEY && load(KEY);
    if (!o || !st.sid || o.sid !== st.sid || !Array.isArray(o.msgs)) return;
    const newer = (o.seq || 0) > (st.seq || 0);
    for (const m of o.msgs) addMessage(m, false);
    if (newer) setPrompt(o.prompt);
    if (o.status === "completed") setFinished(true);
  });

  const resetSession = () => {
    st = fresh(st.open);
    bySeq.clear();
    byId.clear();
    logEl.replaceChildren();
    save();
  };
  const FINAL = ["invalid_field", "session_closed", "bad_frame"]; // never accepted as sent
  const HANDLERS = {
    welcome(w) {
      if (st.sid && (w.session_id !== st.sid || !w.resumed)) resetSession();
      st.sid = w.session_id;
      st.token = w.resume_token;
      st.status = w.status;
      ready = true;
      tries = 0;
      setNet("online");
      for (const m of w.transcript || []) addMessage(m, false);
      if (w.seq > (st.seq || 0)) st.seq = w.seq;
      // a queued answer to this very prompt is about to be resent
      const answered = w.prompt && st.out.some((f) => f.name === w.prompt.field);
      setPrompt(answered ? null : w.prompt);
      setFinished(w.status === "completed");
      save();
      scrollDown();
      flush();
    },
    message(m) {
      addMessage(m, true);
      if (m.from === "bot") setPrompt(m.prompt);
      save();
    },
    ack(a) {
      st.out = st.out.filter((f) => f.id !== a.id);
      delete st.asked[a.id];
      acked(a.id, a.seq);
      save();
    },
    lead(l) {
      if (l.status === "completed") setFinished(true);
      else st.status = l.status;
      save();
    },
    error(e) {
      const frame = st.out.find((f) => f.id === e.id);
      if (e.code === "bad_resume") return resetSession();
      if (e.code === "unknown_site") return stop();
      if (!frame) return;
      if (e.code === "rate_limited") {
        setNet("slow");
        clearTimeout(timer);
        timer = setTimeout(() => {
          if (ready) {
            setNet("online");
            flush();
          }
        }, 2000);
        return;
      }
      // Other codes (e.g. the server could not save it): keep it for the next socket.
      if (!FINAL.includes(e.code)) return;
      st.out = st.out.filter((f) => f !== frame);
      const b = byId.get(e.id);
      byId.delete(e.id);
      if (b) b.remove();
      if (e.code === "invalid_field") {
        setPrompt(st.asked[e.id] || st.prompt);
        if (!input.value) input.value = frame.value || "";
        showError(e.message);
        input.focus();
      } else if (e.code === "session_closed") setFinished(true);
      delete st.asked[e.id];
      save();
    },
    pong() {},
  };

  // --- start -------------------------------------------------------------------
  const start = () => {
    doc.body.append(host);
    setAccent(ds.accent);
    updateLauncher();
    setNet(st.sid ? "connecting" : "idle");
    for (const m of st.msgs) place(bubble(m.from, m.text), m.seq);
    for (const f of st.out) {
      if (f.type === "message" || f.type === "field") addPending(f.id, f.text ?? f.value);
    }
    setPrompt(st.prompt);
    setFinished(st.status === "completed");
    // resume at once (deliver queued frames, hear replies); a finished chat waits
    if (st.sid && st.status !== "completed") connect();
    if (st.open || (ds.open != null && ds.open !== "false" && st.open !== false)) openPanel(false);
  };
  window.chatlead = { open: () => openPanel(true), close: closePanel };
  if (doc.body) start();
  else doc.addEventListener("DOMContentLoaded", start);
})();
