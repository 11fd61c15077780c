// chatlead live console, the view: draws the chat list and the open conversation from
// what live.js knows (state), with textContent only: visitor text never becomes markup.
(function () {
  "use strict";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  var $ = function (id) { return document.getElementById(id); };

  // ui: the page's elements; state: {sessions, me, selected, snapshotUntil, connected()};
  // onSelect(id, focus): what a click on a chat does
  window.chatleadLiveView = function (ui, state, onSelect) {
    function mine(s) { return !!(s && s.agent && state.me && s.agent.id === state.me.id); }

    function who(m) {
      if (m.from === "agent") {
        if (m.agent && state.me && m.agent.id === state.me.id) { return "You"; }
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
      return Array.from(state.sessions.values()).sort(function (a, b) {
        return (b.activity || 0) - (a.activity || 0);
      });
    }

    function item(s) {
      var li = el("li", "chat-item-wrap");
      var button = el("button", "chat-item");
      button.type = "button";
      button.setAttribute("data-id", s.id);
      if (s.id === state.selected) { button.setAttribute("aria-current", "true"); }
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
      button.addEventListener("click", function () { onSelect(s.id, true); });
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
      var waiting = all.filter(function (s) { return s.waitingSince && s.status === "open"; }).length;
      document.title = (waiting ? "(" + waiting + " waiting) " : "") + "Live chats · chatlead";
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
      var s = state.selected ? state.sessions.get(state.selected) : null;
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
      if (s.earlier && s.earlier.length) {
        var row = el("div", "chat-field");
        row.appendChild(el("dt", null, "Earlier chats"));
        var dd = el("dd");
        s.earlier.slice(0, 5).forEach(function (e, i) {
          if (i) { dd.appendChild(document.createTextNode(", ")); }
          var a = el("a", null, new Date(e.created_at).toLocaleDateString() + " (" + e.status + ")");
          a.href = "/admin/sessions/" + encodeURIComponent(e.session_id);
          dd.appendChild(a);
        });
        row.appendChild(dd);
        ui.fields.appendChild(row);
      }
      ui.fields.hidden = ui.fields.children.length === 0;
      var atBottom = ui.scroll.scrollHeight - ui.scroll.scrollTop - ui.scroll.clientHeight < 40;
      var seqs = Array.from(s.messages.keys()).sort(function (a, b) { return a - b; });
      var items = seqs.map(function (seq) { return bubble(s.messages.get(seq), false); });
      s.pending.forEach(function (p) {
        items.push(bubble({ from: "agent", agent: state.me, text: p.text, failed: p.failed }, true));
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
      var missing = state.selected && Date.now() > state.snapshotUntil && state.connected();
      var title = "Nothing to answer yet", text = "Turn on notifications to hear when a visitor waits.";
      if (state.selected && !missing) {
        title = "Opening the chat…"; text = "";
      } else if (missing) {
        title = "That chat is not live"; text = "It has ended, or it belongs to a site you do not watch.";
      } else if (state.sessions.size) {
        title = "Pick a chat"; text = "Select a conversation to read it, join and reply.";
      }
      $("chat-none-title").textContent = title;
      $("chat-none-text").textContent = text;
      var link = $("chat-none-link");
      link.hidden = !missing;
      if (missing) { link.href = "/admin/sessions/" + encodeURIComponent(state.selected); }
    }

    function renderAll() {
      renderList();
      renderChat();
    }

    return { mine: mine, who: who, elapsed: elapsed, renderAll: renderAll, renderList: renderList,
      renderNone: renderNone };
  };
})();
