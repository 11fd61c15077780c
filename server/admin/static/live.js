// chatlead live console (CONTRACT §10): watch the live sessions over the agent socket
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
    none: $("chat-none"), body: $("chat-body"), back: $("chat-back"),
    title: $("h-chat"), meta: $("chat-meta"), join: $("join"), fields: $("chat-fields"),
    scroll: $("chat-scroll"), hint: $("chat-hint"), transcript: $("transcript"),
    error: $("chat-error"), form: $("reply"), text: $("reply-text"), send: $("send"),
    notify: $("notify")
  };

  var sessions = new Map();  // session_id -> view of the session (see upsert)
  var me = null;             // {id, name} from the server's hello
  var selected = root.getAttribute("data-session") || null;
  var joinedId = null;       // the session this tab joined (re-joined after a reconnect)
  var socket = null;
  var attempt = 0;
  var stopped = false;
  var snapshotUntil = 0, snapshotBase = 0, snapshotN = 0;
  var lastTyping = 0;
  var replayQuietAt = 0;     // messages before this are a join's replay: not announced
  var audio = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

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
    snapshotUntil = snapshotBase + 1500;
    // after a reconnect, a chat the new snapshot does not list ended while we were away
    sessions.forEach(function (s) { s.stale = true; });
    send({ type: "watch" });
    setTimeout(dropStale, 1600);
  }

  function dropStale() {
    if (Date.now() < snapshotUntil) { setTimeout(dropStale, snapshotUntil - Date.now() + 50); return; }
    sessions.forEach(function (s) {
      if (!s.stale) { return; }
      if (s.id === selected || s.id === joinedId) {
        s.stale = false;  // keep what the agent is reading; the join answers for it
      } else {
        sessions.delete(s.id);
      }
    });
    renderAll();
  }

  function join(id) {
    var s = sessions.get(id);
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
    hello: function (f) { me = f.agent || null; renderAll(); },
    session: function (f) { upsert(f); },
    message: function (f) { addMessage(f); },
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
    if (now < snapshotUntil) {
      // the watch snapshot comes newest first: keep that order
      snapshotUntil = now + 500;
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
    var known = sessions.get(f.session_id);
    var s = known || newSession(f.session_id);
    var wasWaiting = !!s.waitingSince;
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
    if (s.joining && s.agent && !me) { me = s.agent; }  // no hello: the join tells who we are
    s.joining = false;
    sessions.set(s.id, s);
    if (s.id === selected && mine(s) && !s.messages.size && joinedId !== s.id) { join(s.id); }
    if (mine(s)) { joinedId = s.id; } else if (joinedId === s.id) { joinedId = null; }
    if (s.status !== "open") {
      if (!s.goneTimer) { s.goneTimer = setTimeout(function () { drop(s.id); }, GONE_MS); }
    } else if (s.goneTimer) {
      clearTimeout(s.goneTimer);
      s.goneTimer = null;
    }
    if (s.waitingSince && !wasWaiting && known && s.status === "open") { visitorWaits(s); }
    renderAll();
  }

  function drop(id) {
    var s = sessions.get(id);
    if (!s || s.status === "open") { return; }
    if (id === selected) {  // keep what the agent is reading; it leaves the list later
      s.goneTimer = setTimeout(function () { drop(id); }, GONE_MS);
      return;
    }
    sessions.delete(id);
    renderAll();
  }

  function addMessage(f) {
    var s = sessions.get(f.session_id);
    if (!s) { s = newSession(f.session_id); sessions.set(s.id, s); }
    var seq = Number(f.seq);
    if (!seq || s.messages.has(seq)) { return; }  // one entry per seq
    // our own message can come back before its ack: adopt the pending entry
    if (f.from === "agent" && me && f.agent && f.agent.id === me.id) {
      for (var i = 0; i < s.pending.length; i += 1) {
        if (s.pending[i].text === f.text && !s.pending[i].failed) { s.pending.splice(i, 1); break; }
      }
    }
    s.messages.set(seq, { seq: seq, from: f.from, agent: f.agent || null, text: f.text || "", ts: f.ts });
    s.maxSeq = Math.max(s.maxSeq, seq);
    s.last = { text: f.text || "", from: f.from, agent: f.agent || null, ts: f.ts };
    if (f.ts && !isNaN(Date.parse(f.ts))) { s.activity = Math.max(s.activity || 0, Date.parse(f.ts)); }
    if (s.id === selected && Date.now() > replayQuietAt) {
      announce(who(f) + ": " + (f.text || ""));
    } else if (s.id === selected) {
      replayQuietAt = Date.now() + 300;
    }
    renderAll();
  }

  function ack(f) {
    sessions.forEach(function (s) {
      for (var i = 0; i < s.pending.length; i += 1) {
        var p = s.pending[i];
        if (p.id !== f.id) { continue; }
        s.pending.splice(i, 1);
        var seq = Number(f.seq);
        if (seq && !s.messages.has(seq)) {
          s.messages.set(seq, { seq: seq, from: "agent", agent: me, text: p.text, ts: new Date().toISOString() });
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
      sessions.forEach(function (one) {
        one.pending.forEach(function (p) { if (p.id === f.id) { p.failed = true; s = one; } });
      });
    }
    s = s || sessions.get(selected);
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

  function mine(s) { return !!(s && s.agent && me && s.agent.id === me.id); }

  function select(id, focus) {
    selected = id;
    var s = sessions.get(id);
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

  ui.back.addEventListener("click", function () {
    root.setAttribute("data-view", "list");
    var button = ui.list.querySelector("[data-id='" + selected + "']");
    if (button) { button.focus(); }
  });

  ui.join.addEventListener("click", function () {
    var s = sessions.get(selected);
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
    var s = sessions.get(selected);
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
    sessions.forEach(function (s) {
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
    if (selected && joinedId === selected && now - lastTyping >= TYPING_EVERY_MS) {
      lastTyping = now;
      send({ type: "typing", session_id: selected });
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

  var stored = null;
  try { stored = localStorage.getItem(NOTIFY_KEY); } catch (e) { /* storage off */ }
  ui.notify.checked = stored === "1";
  ui.notify.addEventListener("change", function () {
    try { localStorage.setItem(NOTIFY_KEY, ui.notify.checked ? "1" : "0"); } catch (e) { /* */ }
    if (!ui.notify.checked) { return; }
    beep();  // also unlocks audio while we have the click
    if (window.Notification && Notification.permission === "default") {
      Notification.requestPermission();
    }
  });

  function announce(text) { ui.announce.textContent = text; }

  // --- rendering --------------------------------------------------------------------

  function who(m) {
    if (m.from === "agent") {
      if (m.agent && me && m.agent.id === me.id) { return "You"; }
      return (m.agent && m.agent.name) || "Agent";
    }
    return m.from === "bot" ? "Bot" : "Visitor";
  }

  function titleOf(s) {
    var byName = {};
    s.fields.forEach(function (pair) { byName[pair[0]] = pair[1]; });
    return String(byName.name || byName.email || byName.phone || "Anonymous visitor");
  }

  function elapsed(iso) {
    var ms = Date.now() - Date.parse(iso);
    if (isNaN(ms)) { return ""; }
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s >= 3600) { return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min"; }
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function clock(iso) {
    var at = new Date(iso);
    if (isNaN(at.getTime())) { return ""; }
    return at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function holderText(s) {
    if (!s.agent) { return null; }
    return mine(s) ? "You're answering" : (s.agent.name || s.agent.id) + " is answering";
  }

  function ordered() {
    return Array.from(sessions.values()).sort(function (a, b) {
      return (b.activity || 0) - (a.activity || 0);
    });
  }

  function item(s) {
    var li = el("li", "chat-item-wrap");
    var button = el("button", "chat-item");
    button.type = "button";
    button.setAttribute("data-id", s.id);
    if (s.id === selected) { button.setAttribute("aria-current", "true"); }
    if (s.status !== "open") { button.classList.add("gone"); }
    if (s.waitingSince && s.status === "open") { button.classList.add("waiting"); }
    var top = el("span", "chat-item-top");
    top.appendChild(el("span", "chat-item-name", titleOf(s)));
    if (s.last && s.last.ts) { top.appendChild(el("span", "chat-item-when", clock(s.last.ts))); }
    button.appendChild(top);
    var last = el("span", "chat-item-last");
    if (s.last && s.last.text) {
      if (s.last.from) { last.appendChild(el("span", "chat-item-from", who(s.last) + ": ")); }
      last.appendChild(document.createTextNode(s.last.text));
    } else {
      last.textContent = "No messages yet";
    }
    button.appendChild(last);
    var tags = el("span", "chat-item-tags");
    tags.appendChild(el("span", "tag site", s.site));
    if (s.status !== "open") { tags.appendChild(el("span", "badge " + s.status, s.status)); }
    if (s.step) { tags.appendChild(el("span", "tag", "at " + s.step)); }
    if (s.fields.length) {
      tags.appendChild(el("span", "tag", s.fields.length + (s.fields.length === 1 ? " field" : " fields")));
    }
    if (s.agent) { tags.appendChild(el("span", "tag held" + (mine(s) ? " me" : ""), holderText(s))); }
    if (s.waitingSince && s.status === "open") {
      var badge = el("span", "badge waiting", "waiting " + elapsed(s.waitingSince));
      badge.setAttribute("data-since", s.waitingSince);
      tags.appendChild(badge);
    }
    button.appendChild(tags);
    button.addEventListener("click", function () { select(s.id, true); });
    li.appendChild(button);
    return li;
  }

  function renderList() {
    var focusedId = document.activeElement && document.activeElement.getAttribute("data-id");
    var all = ordered();
    var live = all.filter(function (s) { return s.status === "open"; }).length;
    ui.list.replaceChildren.apply(ui.list, all.map(item));
    ui.empty.hidden = all.length > 0;
    ui.list.hidden = all.length === 0;
    ui.count.textContent = String(live);
    ui.count.setAttribute("aria-label", live + (live === 1 ? " live chat" : " live chats"));
    if (focusedId) {
      var again = ui.list.querySelector("[data-id='" + focusedId + "']");
      if (again) { again.focus(); }
    }
  }

  function bubble(m, pending) {
    var li = el("li", m.from + (pending ? " pending" : "") + (m.failed ? " failed" : ""));
    var meta = el("div", "meta", who(m));
    if (m.ts) { meta.appendChild(document.createTextNode(" · " + clock(m.ts))); }
    if (pending) { meta.appendChild(document.createTextNode(m.failed ? " · not sent" : " · sending…")); }
    li.appendChild(meta);
    li.appendChild(el("div", "text", m.text));
    return li;
  }

  function renderChat() {
    var s = selected ? sessions.get(selected) : null;
    ui.none.hidden = !!s;
    ui.body.hidden = !s;
    if (!s) { renderNone(); return; }
    var joined = mine(s);
    ui.title.textContent = titleOf(s);
    var meta = [s.site, s.status === "open" ? null : s.status, s.step ? "step: " + s.step : null,
      holderText(s)].filter(Boolean);
    ui.meta.textContent = meta.join(" · ");
    ui.join.textContent = joined ? "Leave" : s.joining ? "Joining…" : "Join";
    ui.join.className = joined ? "secondary" : "";
    // held by someone else: Join stays clickable and the server's `taken` says who
    ui.join.disabled = !joined && (s.joining || s.status !== "open");
    ui.fields.replaceChildren();
    s.fields.forEach(function (pair) {
      var row = el("div", "chat-field");
      row.appendChild(el("dt", null, pair[0]));
      row.appendChild(el("dd", null, typeof pair[1] === "object" ? JSON.stringify(pair[1]) : pair[1]));
      ui.fields.appendChild(row);
    });
    ui.fields.hidden = s.fields.length === 0;
    var atBottom = ui.scroll.scrollHeight - ui.scroll.scrollTop - ui.scroll.clientHeight < 40;
    var seqs = Array.from(s.messages.keys()).sort(function (a, b) { return a - b; });
    var items = seqs.map(function (seq) { return bubble(s.messages.get(seq), false); });
    s.pending.forEach(function (p) {
      items.push(bubble({ from: "agent", agent: me, text: p.text, failed: p.failed }, true));
    });
    ui.transcript.replaceChildren.apply(ui.transcript, items);
    var hint = null;
    if (!items.length && !joined) {
      hint = s.agent ? holderText(s) + ". The conversation shows here once you join."
        : "Join to load the conversation and reply.";
    } else if (!items.length) {
      hint = "Loading the conversation…";
    }
    var quote = !items.length && s.last && s.last.text;
    ui.hint.hidden = !hint;
    $("chat-hint-text").textContent = hint || "";
    $("chat-hint-last").hidden = !quote;
    $("chat-hint-quote").textContent = quote ? (s.last.from ? who(s.last) + ": " : "") + s.last.text : "";
    ui.error.hidden = !s.error;
    ui.error.textContent = s.error || "";
    var canReply = joined && s.status === "open";
    ui.text.disabled = !canReply;
    ui.send.disabled = !canReply;
    ui.text.placeholder = canReply ? "Write a reply…"
      : s.status !== "open" ? "This chat has ended" : "Join this chat to reply";
    if (atBottom) { ui.scroll.scrollTop = ui.scroll.scrollHeight; }
  }

  function renderNone() {
    var missing = selected && Date.now() > snapshotUntil && socket && socket.readyState === WebSocket.OPEN;
    var title = "Nothing to answer yet", text = "Turn on notifications to hear when a visitor waits.";
    if (selected && !missing) {
      title = "Opening the chat…"; text = "";
    } else if (missing) {
      title = "That chat is not live"; text = "It has ended, or it belongs to a site you do not watch.";
    } else if (sessions.size) {
      title = "Pick a chat"; text = "Select a conversation to read it, join and reply.";
    }
    $("chat-none-title").textContent = title;
    $("chat-none-text").textContent = text;
    var link = $("chat-none-link");
    link.hidden = !missing;
    if (missing) { link.href = "/admin/sessions/" + encodeURIComponent(selected); }
  }

  function renderAll() {
    renderList();
    renderChat();
  }

  setInterval(function () {  // the waiting badges count up, in place
    if (selected && !sessions.has(selected)) { renderNone(); }
    ui.list.querySelectorAll("[data-since]").forEach(function (badge) {
      badge.textContent = "waiting " + elapsed(badge.getAttribute("data-since"));
    });
  }, 1000);

  if (selected) { root.setAttribute("data-view", "chat"); }
  renderAll();
  connect();
})();
