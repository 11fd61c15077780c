// The chat UI, loaded by the launcher (../loader.js) on first use. It defines
// window.__chatleadUI(ctx) -> {open(focus), close()}; ctx carries the loader's shadow
// root, launcher, options (ds = the tag's data-* attributes), site, base URL, language,
// the trigger that opened it and a resume-link token.
// Protocol: docs/PROTOCOL.md (hello/welcome, message/field + ack, resume by last_seq).
import { connection } from "./connection.js";
import css from "./panel.css";
import { fresh, load, restore, store, uuid, visitorId } from "./store.js";
import { RTL, STRINGS } from "./strings.js";
import { createView } from "./view.js";

window.__chatleadUI = (ctx) => {
  const T = STRINGS[ctx.lang] || STRINGS.en;
  ctx.wrap.lang = STRINGS[ctx.lang] ? ctx.lang : "en";
  ctx.wrap.dir = RTL.includes(ctx.wrap.lang) ? "rtl" : "ltr";
  ctx.wrap.setAttribute("aria-label", ctx.ds.title || T.title);
  ctx.addSheet(css);
  const v = createView(ctx, T, ctx.wrap.lang);
  const { panel, log: logEl, input, form, doneBox } = v;
  const KEY = "chatlead:" + ctx.site;
  const uid = visitorId();
  let st = restore(KEY);
  const save = () => {
    st.msgs = st.msgs.slice(-200);
    store(KEY, st);
  };

  // --- rendering --------------------------------------------------------------
  const bySeq = new Map(); // seq -> row
  const byId = new Map(); // client frame id -> pending visitor row
  let prompt = null;
  let unread = false;
  const showState = () =>
    ctx.state(!panel.hidden, unread, !panel.hidden ? T.close : unread ? T.unread : T.open);

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
  const place = (r, seq) => {
    r.dataset.seq = seq;
    bySeq.set(seq, r);
    // keep seq order; pending (unsequenced) rows and the typing dots stay last
    const after = [...logEl.children].find((c) => !c.dataset.seq || +c.dataset.seq > seq);
    logEl.insertBefore(r, after || null);
  };
  const remember = (m) => {
    if (!st.msgs.some((x) => x.seq === m.seq)) {
      const kept = { seq: m.seq, from: m.from, text: m.text, ts: m.ts };
      if (m.name) kept.name = String(m.name).slice(0, 80);
      st.msgs.push(kept);
      st.msgs.sort((a, b) => a.seq - b.seq);
    }
    if (m.seq > (st.seq || 0) && m.from !== "sys") st.seq = m.seq;
  };
  // Render a server message once (dedupe by seq); match it to a pending row. Notes
  // ("Ana joined the chat", from "sys") are kept with the messages, numbered just after
  // the last seq they followed (seq + 0.5), so they stay in place after a reload.
  const addMessage = (m, live) => {
    if (typeof m.seq !== "number" || bySeq.has(m.seq)) return;
    const note = m.from === "sys";
    if (m.from === "visitor") {
      const mine = [...byId.values()].find((r) => !r.dataset.seq && r.dataset.text === m.text);
      if (mine) {
        mine.dataset.seq = m.seq;
        bySeq.set(m.seq, mine);
        remember(m);
        return;
      }
    } else if (live && !note) v.typing(false);
    place(v.row(m), m.seq);
    remember(m);
    if (live && !note && m.from !== "visitor" && panel.hidden) {
      unread = true;
      showState();
    }
    if (pinned) scrollDown();
  };
  const addPending = (id, text) => {
    const r = v.row({ from: "visitor", text });
    r.bubble.classList.add("wait");
    r.dataset.text = text;
    r.bubble.title = T.sending;
    byId.set(id, r);
    logEl.append(r);
    v.keepTypingLast();
    scrollDown();
  };
  const acked = (id, seq) => {
    const r = byId.get(id);
    byId.delete(id);
    if (!r) return;
    if (bySeq.has(seq) && bySeq.get(seq) !== r) return r.remove();
    r.bubble.classList.remove("wait");
    r.bubble.removeAttribute("title");
    if (!r.dataset.seq) {
      r.remove();
      place(r, seq);
    }
    remember({ seq, from: "visitor", text: r.dataset.text, ts: new Date().toISOString() });
  };

  // the dots (or "Ana is typing…") at the end of the log, in view
  const showTyping = (ms, name) => {
    v.typing(true, ms, name);
    if (pinned) scrollDown();
  };
  // An agent took the chat over (name) or left it (null): the header shows who answers.
  const setAgent = (name) => {
    st.agent = name || null;
    v.setAgent(st.agent);
  };
  const addNote = (status, name) => {
    let seq = (st.seq || 0) + 0.5;
    while (bySeq.has(seq)) seq += 0.01;
    addMessage({ seq, from: "sys", text: status, name }, true);
  };

  const setPrompt = (p) => {
    prompt = p && typeof p.field === "string" ? p : null;
    st.prompt = prompt;
    v.setPrompt(prompt, send);
  };
  const setFinished = (done) => {
    st.status = done ? "completed" : st.status;
    const focusWasIn = form.contains(ctx.root.activeElement);
    form.hidden = done;
    doneBox.hidden = !done;
    if (done) {
      v.typing(false);
      v.choices.hidden = true;
      if (focusWasIn) v.restart.focus();
    }
  };

  // A notice to agree to first (§12): while a required one is open the visitor
  // answers nothing else; a consent frame waiting to be sent counts as given.
  const setConsent = (c) => {
    const given = st.out.some((f) => f.type === "consent");
    st.consent = c && !given && st.status !== "completed" ? c : null;
    const focusWasIn = v.consentBox.contains(ctx.root.activeElement);
    v.setConsent(st.consent);
    const blocked = !!(st.consent && st.consent.required);
    form.hidden = blocked || st.status === "completed";
    if (blocked) v.choices.hidden = true;
    else if (focusWasIn) input.focus();
  };
  v.agree.onclick = () => {
    const frame = {
      type: "consent",
      id: uuid(),
      version: st.consent.version,
      marketing: v.consentBox.querySelector("input").checked,
    };
    st.out.push(frame);
    setConsent(null);
    setPrompt(st.prompt);
    save();
    net.send(frame);
  };

  // --- panel -------------------------------------------------------------------
  const openPanel = (focus) => {
    panel.hidden = false;
    unread = false;
    showState();
    st.open = true;
    save();
    net.connect();
    scrollDown();
    if (focus) (net.stopped ? v.closeBtn : st.consent ? v.agree : form.hidden ? v.restart : input).focus();
  };
  const closePanel = () => {
    panel.hidden = true;
    showState();
    st.open = false;
    save();
    ctx.launcher.focus();
  };
  v.closeBtn.onclick = closePanel;
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      closePanel();
    }
  });

  // --- sending -----------------------------------------------------------------
  function send(raw, skipping, value) {
    const text = raw.trim();
    if (!text && !(skipping && prompt)) return;
    const id = uuid();
    // a slot typed as it is shown: the time it names (§12)
    const typed = prompt && prompt.kind === "slot" && value === undefined
      ? (prompt.options || []).find((o) => String(o.label).toLowerCase() === text.toLowerCase())
      : null;
    if (typed) value = String(typed.value);
    const frame = prompt
      ? { type: "field", id, name: prompt.field, value: value ?? text }
      : { type: "message", id, text };
    if (value !== undefined) frame.text = text; // shown while it is sent
    if (prompt) st.asked[id] = prompt;
    addPending(id, text);
    input.value = "";
    v.showError("");
    setPrompt(null);
    st.out.push(frame);
    save();
    input.focus();
    net.send(frame);
  }
  form.onsubmit = (e) => {
    e.preventDefault();
    send(input.value);
  };
  v.skip.onclick = () => send("", true);
  v.restart.onclick = () => {
    st = fresh(true);
    save();
    bySeq.clear();
    byId.clear();
    logEl.replaceChildren();
    setAgent(null);
    setFinished(false);
    setPrompt(null);
    input.focus();
    net.restart();
  };

  const resetSession = () => {
    st = fresh(st.open);
    bySeq.clear();
    byId.clear();
    logEl.replaceChildren();
    setAgent(null);
    save();
  };
  const stop = () => {
    const focusWasIn = form.contains(ctx.root.activeElement);
    v.setNet("unavailable");
    form.hidden = v.choices.hidden = true;
    if (focusWasIn) v.closeBtn.focus();
  };

  // Another tab of this site moved the conversation on: show what it saw.
  addEventListener("storage", (e) => {
    const o = e.key === KEY && load(KEY);
    if (!o || !st.sid || o.sid !== st.sid || !Array.isArray(o.msgs)) return;
    const newer = (o.seq || 0) > (st.seq || 0);
    for (const m of o.msgs) addMessage(m, false);
    if (newer) setPrompt(o.prompt);
    if (o.agent !== st.agent) setAgent(o.agent);
    if (o.status === "completed") setFinished(true);
  });

  const FINAL = ["invalid_field", "session_closed", "bad_frame", "consent_required"]; // never accepted as sent
  const HANDLERS = {
    welcome(w) {
      if (st.sid && (w.session_id !== st.sid || !w.resumed)) resetSession();
      st.sid = w.session_id;
      st.token = w.resume_token;
      st.status = w.status;
      for (const m of w.transcript || []) addMessage(m, false);
      if (w.seq > (st.seq || 0)) st.seq = w.seq;
      // a queued answer to this very prompt is about to be resent
      const answered = w.prompt && st.out.some((f) => f.name === w.prompt.field);
      setPrompt(answered ? null : w.prompt);
      setFinished(w.status === "completed");
      setConsent(w.consent || null);
      save();
      scrollDown();
    },
    message(m) {
      addMessage(m, true);
      if (m.from === "bot") setPrompt(m.prompt);
      save();
    },
    // an agent typing: "Ana is typing…" until a message from them, or 6 s without another
    typing(f) {
      showTyping(6000, (f.from === "agent" && st.agent) || "");
    },
    // an agent joined or left; a repeat (e.g. said again after a reconnect) changes nothing
    agent(a) {
      const name = String(a.name || st.agent || "").slice(0, 80);
      if (a.status === "joined" && name && name !== st.agent) {
        addNote("joined", name);
        setAgent(name);
        setPrompt(null); // free text to the agent; the bot asks again when they leave
      } else if (a.status === "left" && st.agent) {
        v.typing(false);
        addNote("left", name);
        setAgent(null);
      } else return;
      save();
    },
    ack(a) {
      const answered = st.asked[a.id];
      st.out = st.out.filter((f) => f.id !== a.id);
      delete st.asked[a.id];
      acked(a.id, a.seq);
      // an answer to the bot's question: its next question is on the way
      // (not while an agent holds the chat: the bot asks nothing then)
      if (answered && !bySeq.has(a.seq + 1) && st.status !== "completed" && !st.agent)
        showTyping();
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
      if (e.code === "unknown_site") return net.stop();
      if (!frame) return;
      if (e.code === "rate_limited") return net.slow();
      // Other codes (e.g. the server could not save it): keep it for the next socket.
      if (!FINAL.includes(e.code)) return;
      v.typing(false);
      st.out = st.out.filter((f) => f !== frame);
      const r = byId.get(e.id);
      byId.delete(e.id);
      if (r) r.remove();
      if (e.code === "invalid_field" || e.code === "consent_required") {
        setPrompt(e.prompt || st.asked[e.id] || st.prompt); // e.g. the next free slots
        if (!input.value && !e.prompt) input.value = frame.value || "";
        v.showError(e.message);
        input.focus();
      } else if (e.code === "session_closed") setFinished(true);
      if (frame.type === "consent") setConsent(null); // the next welcome shows it again
      delete st.asked[e.id];
      save();
    },
    pong() {},
  };

  const hello = () => {
    const h = {
      type: "hello",
      site: ctx.site,
      user_id: uid,
      lang: ctx.wrap.lang, // the bot speaks it where the site has texts for it
      page: {
        url: location.href.slice(0, 2000),
        title: document.title.slice(0, 200),
        referrer: document.referrer.slice(0, 2000),
      },
    };
    const attribution = { ...load("chatlead:first"), ...load("chatlead:touch") };
    if (Object.keys(attribution).length) h.attribution = attribution;
    if (ctx.trigger) h.trigger = ctx.trigger;
    // the page's signed-in user (data-user-id, data-user-hash: §13); the server checks it
    if (ctx.ds.userId) h.identity = { id: ctx.ds.userId, hash: ctx.ds.userHash || "" };
    if (ctx.resume) h.resume = ctx.resume;
    if (v.honeypot.value) h.hp = v.honeypot.value.slice(0, 200); // only bots fill it (§12)
    if (st.sid && st.token) {
      h.session_id = st.sid;
      h.resume_token = st.token;
      h.last_seq = st.seq || 0;
    }
    return h;
  };
  const net = connection({
    url: ctx.base.replace(/^http/, "ws") + "/ws?site=" + encodeURIComponent(ctx.site),
    hello,
    handlers: HANDLERS,
    setNet: v.setNet,
    onStop: stop,
    pending: () => st.out,
    wanted: () => !!st.sid || !panel.hidden,
  });

  // --- start -------------------------------------------------------------------
  v.setNet(st.sid ? "connecting" : "idle");
  setAgent(st.agent);
  for (const m of st.msgs) place(v.row(m), m.seq);
  for (const f of st.out) {
    if (f.type === "message" || f.type === "field") addPending(f.id, f.text ?? f.value);
  }
  setPrompt(st.prompt);
  setFinished(st.status === "completed");
  setConsent(st.consent);
  showState();
  // resume at once (deliver queued frames, hear replies); a finished chat waits
  if (st.sid && st.status !== "completed") net.connect();
  return { open: openPanel, close: closePanel };
};
