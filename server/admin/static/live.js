// chatlead live console (CONTRACT §10): watch the live state.sessions over the agent socket
// (/agent, same origin, the login cookie goes along), join one, answer it.
// Every text from a visitor or the server goes into the page with textContent only.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root) { return; }

  var GONE_MS = 8000;          // a completed/abandoned chat stays, greyed, this long
  var TYPING_EVERY_MS = 2000;  // at most one `typing` frame per 2 s
  var BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
  var NOTIFY_KEY = "chatlead.live.notify";
  var ERRORS = {
    not_joined: "Join this chat before replying.",
    session_closed: "This chat has ended; it can no longer be answered.",
    forbidden: "You may not open chats of this site.",
    bad_frame: "The server did not understand that request."
  };

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    status: $("live-status"), statusText: $("live-status-text"), announce: $("live-announce"),
    list: $("chats"), empty: $("chats-empty"), count: $("chat-count"),
    none: $("chat-none"), body: $("chat-body"),
    title: $("h-chat"), meta: $("chat-meta"), join: $("join"), fields: $("chat-fields"),
    scroll: $("chat-scroll"), hint: $("chat-hint"), transcript: $("transcript"),
    error: $("chat-error"), form: $("reply"), text: $("reply-text"), send: $("send"),
    notify: $("notify")
  };

  var state = {
    sessions: new Map(),  // session_id -> what we know of it (see upsert)
    me: null,             // {id, name}: the server's hello
    selected: root.getAttribute("data-session") || null,
    snapshotUntil: 0,     // session frames before this are the watch snapshot
    connected: function () { return !!socket && socket.readyState === WebSocket.OPEN; }
  };
  var joinedId = null;       // the session this tab joined (re-joined after a reconnect)
  var socket = null;
  var attempt = 0;
  var stopped = false;
  var snapshotBase = 0, snapshotN = 0;
  var view = window.chatleadLiveView(ui, state, select);
  var mine = view.mine, who = view.who, renderAll = view.renderAll;
  var lastTyping = 0;
  var replayQuietAt = 0;     // messages before this are a join's replay: not announced
  var audio = null;

  // --- the socket ---------------------------------------------------------------

  function setStatus(state, text) {
    ui.status.setAttribute("data-state", state);
    ui.statusText.textContent = text;
  }

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) { return false; }
    socket.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    setStatus(attempt ? "reconnecting" : "connecting", attempt ? "Reconnecting…" : "Connecting…");
    socket = new WebSocket(scheme + location.host + root.getAttribute("data-socket"));
    socket.onopen = function () {
      attempt = 0;
      setStatus("live", "Live");
      watch();
      if (joinedId) { join(joinedId); }
      resendPending();
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && typeof frame.type === "string" && HANDLERS[frame.type]) {
        HANDLERS[frame.type](frame);
      }
    };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 1008) {  // policy: signed out, agent removed or origin refused
        stopped = true;
        setStatus("stopped", "Disconnected: your access ended. Reload the page to sign in again.");
        return;
      }
      var wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      attempt += 1;
      setStatus("reconnecting", "Reconnecting in " + Math.round(wait / 1000) + " s…");
      setTimeout(function () { if (!stopped) { connect(); } }, wait);
    };
  }

  function watch() {
    snapshotBase = Date.now();
    snapshotN = 0;
    state.snapshotUntil = snapshotBase + 1500;
    // after a reconnect, a chat the new snapshot does not list ended while we were away
    state.sessions.forEach(function (s) { s.stale = true; });
    send({ type: "watch" });
    setTimeout(dropStale, 1600);
  }

  function dropStale() {
    if (Date.now() < state.snapshotUntil) { setTimeout(dropStale, state.snapshotUntil - Date.now() + 50); return; }
    state.sessions.forEach(function (s) {
      if (!s.stale) { return; }
      if (s.id === state.selected || s.id === joinedId) {
        s.stale = false;  // keep what the agent is reading; the join answers for it
      } else {
        state.sessions.delete(s.id);
      }
    });
    renderAll();
  }

  function join(id) {
    var s = state.sessions.get(id);
    var frame = { type: "join", session_id: id };
    if (s && s.maxSeq > 0) { frame.last_seq = s.maxSeq; }
    replayQuietAt = Date.now() + 600;
    if (s && !mine(s)) {
      s.joining = true;
      setTimeout(function () {
        if (!s.joining) { return; }
        s.joining = false;
        s.error = "No answer from the server yet; try again.";
        renderAll();
      }, 8000);
    }
    send(frame);
  }

  // --- frames from the server -------------------------------------------------------

  var HANDLERS = {
    hello: function (f) { state.me = f.agent || null; renderAll(); },
    session: function (f) { upsert(f); },
    message: function (f) { addMessage(f); },
    // a signed-in visitor's other chats, sent after a join
    history: function (f) {
      var s = state.sessions.get(f.session_id);
      if (s) { s.earlier = f.sessions || []; renderAll(); }
    },
    ack: function (f) { ack(f); },
    error: function (f) { showError(f); }
  };

  function fieldsOf(raw) {
    var out = [];
    if (Array.isArray(raw)) {
      raw.forEach(function (item) {
        if (item && item.name !== undefined) { out.push([String(item.name), item.value]); }
      });
    } else if (raw && typeof raw === "object") {
      Object.keys(raw).forEach(function (name) { out.push([name, raw[name]]); });
    }
    return out.filter(function (pair) {
      return pair[1] !== null && pair[1] !== undefined && pair[1] !== "";
    });
  }

  function lastOf(raw) {
    if (!raw) { return null; }
    if (typeof raw === "string") { return { text: raw, from: null, agent: null, ts: null }; }
    return { text: raw.text || "", from: raw.from || null, agent: raw.agent || null, ts: raw.ts || null };
  }

  function activityOf(f, last) {
    var ts = f.last_activity_at || f.updated_at || (last && last.ts) || null;
    var ms = ts ? Date.parse(ts) : NaN;
    if (!isNaN(ms)) { return ms; }
    var now = Date.now();
    if (now < state.snapshotUntil) {
      // the watch snapshot comes newest first: keep that order
      state.snapshotUntil = now + 500;
      snapshotN += 1;
      return snapshotBase - snapshotN;
    }
    return now;
  }

  function newSession(id) {
    return {
      id: id, messages: new Map(), pending: [], maxSeq: 0, joining: false,
      goneTimer: null, waitingNotified: false
    };
  }

  function upsert(f) {
    if (!f.session_id) { return; }
    var known = state.sessions.get(f.session_id);
    var s = known || newSession(f.session_id);
    var wasWaiting = !!s.waitingSince;
    var inSnapshot = Date.now() < state.snapshotUntil;
    s.site = f.site || s.site || "";
    s.status = f.status || s.status || "open";
    s.step = f.step || "";
    s.fields = fieldsOf(f.fields);
    var last = lastOf(f.last_message);
    if (last && !(s.last && s.last.ts && last.ts && Date.parse(last.ts) < Date.parse(s.last.ts))) {
      s.last = last;  // a message frame may already have shown a newer one
    }
    s.agent = f.agent && f.agent.id ? f.agent : null;
    s.waitingSince = f.waiting_since || null;
    s.activity = Math.max(s.activity || 0, activityOf(f, s.last));
    s.stale = false;
    if (s.joining && s.agent && !state.me) { state.me = s.agent; }  // no hello: the join tells who we are
    s.joining = false;
    state.sessions.set(s.id, s);
    if (s.id === state.selected && mine(s) && !s.messages.size && joinedId !== s.id) { join(s.id); }
    if (mine(s)) { joinedId = s.id; } else if (joinedId === s.id) { joinedId = null; }
    if (s.status !== "open") {
      if (!s.goneTimer) { s.goneTimer = setTimeout(function () { drop(s.id); }, GONE_MS); }
    } else if (s.goneTimer) {
      clearTimeout(s.goneTimer);
      s.goneTimer = null;
    }
    // not for the chats already waiting when the page opened: those are on screen
    if (s.waitingSince && !wasWaiting && (known || !inSnapshot) && s.status === "open") {
      visitorWaits(s);
    }
    renderAll();
  }

  function drop(id) {
    var s = state.sessions.get(id);
    if (!s || s.status === "open") { return; }
    if (id === state.selected) {  // keep what the agent is reading; it leaves the list later
      s.goneTimer = setTimeout(function () { drop(id); }, GONE_MS);
      return;
    }
    state.sessions.delete(id);
    renderAll();
  }

  function addMessage(f) {
    var s = state.sessions.get(f.session_id);
    if (!s) { s = newSession(f.session_id); state.sessions.set(s.id, s); }
    var seq = Number(f.seq);
    if (!seq || s.messages.has(seq)) { return; }  // one entry per seq
    // our own message can come back before its ack: adopt the pending entry
    if (f.from === "agent" && state.me && f.agent && f.agent.id === state.me.id) {
      for (var i = 0; i < s.pending.length; i += 1) {
        if (s.pending[i].text === f.text && !s.pending[i].failed) { s.pending.splice(i, 1); break; }
      }
    }
    s.messages.set(seq, { seq: seq, from: f.from, agent: f.agent || null, text: f.text || "", ts: f.ts });
    s.maxSeq = Math.max(s.maxSeq, seq);
    s.last = { text: f.text || "", from: f.from, agent: f.agent || null, ts: f.ts };
    if (f.ts && !isNaN(Date.parse(f.ts))) { s.activity = Math.max(s.activity || 0, Date.parse(f.ts)); }
    if (s.id === state.selected && Date.now() > replayQuietAt) {
      announce(who(f) + ": " + (f.text || ""));
    } else if (s.id === state.selected) {
      replayQuietAt = Date.now() + 300;
    }
    renderAll();
  }

  function ack(f) {
    state.sessions.forEach(function (s) {
      for (var i = 0; i < s.pending.length; i += 1) {
        var p = s.pending[i];
        if (p.id !== f.id) { continue; }
        s.pending.splice(i, 1);
        var seq = Number(f.seq);
        if (seq && !s.messages.has(seq)) {
          s.messages.set(seq, { seq: seq, from: "agent", agent: state.me, text: p.text, ts: new Date().toISOString() });
          s.maxSeq = Math.max(s.maxSeq, seq);
        }
        renderAll();
        return;
      }
    });
  }

  function showError(f) {
    var s = null;
    if (f.id) {
      state.sessions.forEach(function (one) {
        one.pending.forEach(function (p) { if (p.id === f.id) { p.failed = true; s = one; } });
      });
    }
    s = s || state.sessions.get(state.selected);
    var text;
    if (f.code === "taken") {
      var holder = s && s.agent && s.agent.name;
      text = (holder || "Another agent") + " is already answering this chat.";
    } else {
      text = ERRORS[f.code] || f.message || "Something went wrong.";
    }
    if (s) { s.joining = false; s.error = text; }
    renderAll();
  }

  // --- what the agent does --------------------------------------------------------

  function select(id, focus) {
    state.selected = id;
    var s = state.sessions.get(id);
    if (s) { s.error = null; }
    root.setAttribute("data-view", "chat");
    var url = new URL(location.href);
    url.searchParams.set("session", id);
    history.replaceState(null, "", url.toString());
    if (mine(s)) { join(id); }  // resume: what came while we were away
    renderAll();
    ui.scroll.scrollTop = ui.scroll.scrollHeight;
    if (focus) { ui.title.focus(); }
  }

  root.querySelectorAll("[data-back]").forEach(function (back) {
    back.addEventListener("click", function () {
      root.setAttribute("data-view", "list");
      var button = ui.list.querySelector("[data-id='" + state.selected + "']");
      (button || ui.list.querySelector("button") || $("h-chats")).focus();
    });
  });

  ui.join.addEventListener("click", function () {
    var s = state.sessions.get(state.selected);
    if (!s) { return; }
    s.error = null;
    if (mine(s)) {
      send({ type: "leave", session_id: s.id });
      s.agent = null;
      joinedId = null;
    } else {
      join(s.id);
    }
    renderAll();
  });

  function submitReply() {
    var s = state.sessions.get(state.selected);
    var text = ui.text.value.trim();
    if (!s || !text || !mine(s)) { return; }
    var p = { id: "a" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8), text: text };
    s.pending.push(p);
    s.error = null;
    send({ type: "message", id: p.id, session_id: s.id, text: text });
    ui.text.value = "";
    renderAll();
    ui.scroll.scrollTop = ui.scroll.scrollHeight;
  }

  function resendPending() {
    state.sessions.forEach(function (s) {
      s.pending.forEach(function (p) {
        if (!p.failed) { send({ type: "message", id: p.id, session_id: s.id, text: p.text }); }
      });
    });
  }

  ui.form.addEventListener("submit", function (event) { event.preventDefault(); submitReply(); });
  ui.text.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitReply();
    }
  });
  ui.text.addEventListener("input", function () {
    var now = Date.now();
    if (state.selected && joinedId === state.selected && now - lastTyping >= TYPING_EVERY_MS) {
      lastTyping = now;
      send({ type: "typing", session_id: state.selected });
    }
  });

  // --- notifications (opt-in, remembered) ----------------------------------------------

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var osc = audio.createOscillator(), gain = audio.createGain(), t = audio.currentTime;
      osc.type = "sine";
      osc.frequency.setValueAtTime(880, t);
      osc.frequency.setValueAtTime(660, t + 0.12);
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
      osc.connect(gain).connect(audio.destination);
      osc.start(t);
      osc.stop(t + 0.32);
    } catch (e) { /* no audio: the notification is enough */ }
  }

  function visitorWaits(s) {
    announce("A visitor is waiting on " + s.site + ".");
    if (!ui.notify.checked) { return; }
    beep();
    if (window.Notification && Notification.permission === "granted") {
      var note = new Notification("A visitor is waiting", {
        body: s.site + (s.last && s.last.text ? ": " + s.last.text : ""), tag: "chatlead-" + s.id
      });
      note.onclick = function () { window.focus(); select(s.id, true); note.close(); };
    }
  }

  function notifyNote() {
    var blocked = ui.notify.checked && window.Notification && Notification.permission === "denied";
    $("notify-note").hidden = !blocked;
  }

  var stored = null;
  try { stored = localStorage.getItem(NOTIFY_KEY); } catch (e) { /* storage off */ }
  ui.notify.checked = stored === "1";
  notifyNote();
  ui.notify.addEventListener("change", function () {
    try { localStorage.setItem(NOTIFY_KEY, ui.notify.checked ? "1" : "0"); } catch (e) { /* */ }
    notifyNote();
    if (!ui.notify.checked) { return; }
    beep();  // also unlocks audio while we have the click
    if (window.Notification && Notification.permission === "default") {
      Notification.requestPermission().then(notifyNote);
    }
  });

  function announce(text) { ui.announce.textContent = text; }

  setInterval(function () {  // the waiting badges count up, in place
    if (state.selected && !state.sessions.has(state.selected)) { view.renderNone(); }
    ui.list.querySelectorAll("[data-since]").forEach(function (badge) {
      badge.textContent = "waiting " + view.elapsed(badge.getAttribute("data-since"));
    });
  }, 1000);

  if (state.selected) { root.setAttribute("data-view", "chat"); }
  renderAll();
  connect();
})();
