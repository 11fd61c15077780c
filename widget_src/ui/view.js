// The panel's DOM: the static shell, message rows (avatar, bubble, time), the typing
// indicator, the prompt's input and quick replies. Text from the server is only ever
// set as text (textContent / text nodes), never parsed as markup.
import { INPUT_HINTS } from "./strings.js";

const ICON_CLOSE =
  '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" fill="none"/></svg>';
const ICON_SEND =
  '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M3.4 20.4 21 12 3.4 3.6 3.4 10l12.6 2-12.6 2z"/></svg>';
const SHELL = `<section class="p" id="p" role="dialog" aria-labelledby="h" hidden>
<header><span class="av" aria-hidden="true"></span><div><h2 id="h"></h2><p id="sub"></p></div><button class="x" type="button">${ICON_CLOSE}</button></header>
<p class="n" role="status" hidden></p>
<div class="g" role="log" aria-live="polite" tabindex="0"></div>
<div class="q" role="group" hidden></div>
<div class="cs" role="group" aria-labelledby="ct" hidden><p id="ct"></p><label hidden><input type="checkbox"><span></span></label><button type="button"></button></div>
<div class="d" hidden><p></p><button type="button"></button></div>
<form novalidate><input class="hp" name="website" tabindex="-1" autocomplete="off" aria-hidden="true"><label class="sr" for="i"></label><input id="i" maxlength="1000" aria-describedby="e"><button class="k" type="button" hidden></button><button class="s" type="submit">${ICON_SEND}</button><p class="e" id="e" role="alert" hidden></p></form>
</section>`;

export const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
};

const initial = (name) => (String(name || "").trim()[0] || "?").toUpperCase();

// "{name} joined the chat": the name as given (a "$&" in it is not a pattern)
export const say = (text, name) => text.replace("{name}", () => name);

export function createView(ctx, T, lang) {
  const holder = el("div");
  holder.innerHTML = SHELL;
  const panel = holder.firstChild;
  ctx.wrap.append(panel);
  const $ = (s) => panel.querySelector(s);
  const title = ctx.ds.title || T.title;
  const v = {
    panel,
    net: $(".n"),
    log: $(".g"),
    choices: $(".q"),
    doneBox: $(".d"),
    restart: $(".d button"),
    form: $("form"),
    label: $("form label"),
    input: $("#i"),
    skip: $(".k"),
    closeBtn: $(".x"),
    err: $(".e"),
    consentBox: $(".cs"),
    honeypot: $(".hp"),
    agree: $(".cs button"),
  };
  $("h2").textContent = title;
  // the team's initial; with no data-title, the launcher's chat glyph instead of a letter
  const badge = (name) => {
    const av = el("span", "av");
    av.setAttribute("aria-hidden", "true");
    if (name) av.textContent = initial(name);
    else av.append(ctx.launcher.querySelector("svg").cloneNode(true));
    return av;
  };
  const team = badge(ctx.ds.title);
  let head = team;
  $("header .av").replaceWith(team);
  // while an agent is in the chat the header shows them, the team's name below
  v.setAgent = (name) => {
    const next = name ? badge(name) : team;
    head.replaceWith(next);
    head = next;
    panel.classList.toggle("ag", !!name);
    const sub = $("#sub");
    $("h2").textContent = name || title;
    sub.textContent = (name ? ctx.ds.title : ctx.ds.greeting) || "";
    sub.hidden = !sub.textContent;
  };
  v.closeBtn.setAttribute("aria-label", T.close);
  $(".s").setAttribute("aria-label", T.send);
  v.log.setAttribute("aria-label", T.log);
  v.choices.setAttribute("aria-label", T.replies);
  v.skip.textContent = T.skip;
  v.doneBox.firstChild.textContent = T.done;
  v.restart.textContent = T.restart;
  v.agree.textContent = T.agree;

  // The site's notice (§12) before the first answer: its text, the marketing opt-in
  // (unticked) when the site offers one; null hides it. Returns the checkbox.
  v.setConsent = (c) => {
    const box = v.consentBox;
    box.hidden = !c;
    if (!c) return;
    box.querySelector("p").textContent = c.text;
    const opt = box.querySelector("label");
    opt.hidden = !c.marketing;
    opt.querySelector("span").textContent = c.marketing || "";
    opt.querySelector("input").checked = false;
  };

  let clock = null;
  const time = (ts) => {
    const d = ts ? new Date(ts) : new Date();
    if (isNaN(d)) return "";
    try {
      clock = clock || new Intl.DateTimeFormat(lang, { hour: "numeric", minute: "2-digit" });
      return clock.format(d);
    } catch {
      return "";
    }
  };

  // One message: a row with the speaker's avatar, the bubble (a screen-reader prefix,
  // then the text) and its time. Consecutive rows of one speaker share avatar and time.
  // An agent's row also names them above the first bubble of a run; a note ("Ana
  // joined the chat", from "sys") is a centred line.
  v.row = (m) => {
    if (m.from === "sys") {
      const r = el("div", "r y");
      r.append(el("p", "", say(T.agent[m.text === "left" ? 1 : 0], m.name)));
      return r;
    }
    const from = m.from === "visitor" ? "visitor" : m.from === "agent" ? "agent" : "bot";
    const who = from === "agent" ? String(m.name || "") : "";
    const r = el("div", "r " + from);
    const b = el("div", "m " + (from === "visitor" ? "visitor" : "bot"));
    b.append(el("span", "sr", from === "visitor" ? T.you : (who ? who + ":" : T.them) + " "));
    // the text's own direction (an English question in an Arabic widget reads right)
    const text = m.text ? el("span", "", m.text) : el("em", "", T.skipped);
    text.dir = "auto";
    b.append(text);
    const c = el("div", "c");
    const t = el("span", "t", time(m.ts));
    t.setAttribute("aria-hidden", "true");
    if (who) {
      const n = el("span", "nm", who);
      n.setAttribute("aria-hidden", "true");
      c.append(n);
    }
    c.append(b, t);
    if (from !== "visitor") r.append(badge(who || ctx.ds.title));
    r.append(c);
    r.bubble = b;
    return r;
  };

  // "…is typing": three dots in the bot's row, or in an agent's with "Ana is typing…"
  // below; always the last row of the log. Built again only when the typist changes.
  const typing = el("div");
  let typist = null;
  let typingTimer = 0;
  v.typing = (on, ms = 4000, name = "") => {
    clearTimeout(typingTimer);
    if (!on) return typing.remove();
    if (typist !== name) {
      typist = name;
      typing.className = "r typing " + (name ? "agent" : "bot");
      const c = el("div", "c");
      const dots = el("div", "dots");
      dots.append(el("i"), el("i"), el("i"));
      c.append(dots, el("span", name ? "t" : "sr", name ? say(T.agent[2], name) : T.typing));
      typing.replaceChildren(badge(name || ctx.ds.title), c);
    }
    if (v.log.lastChild !== typing) v.log.append(typing);
    typingTimer = setTimeout(() => typing.remove(), ms);
  };
  v.keepTypingLast = () => typing.isConnected && v.log.append(typing);

  v.setPrompt = (prompt, send) => {
    const kind = prompt ? prompt.kind : "text";
    const hint = INPUT_HINTS[kind] || ["text", "off", "text"];
    v.input.type = hint[0];
    v.input.autocomplete = hint[1];
    v.input.inputMode = hint[2];
    v.label.textContent = T[kind] || T.text;
    v.input.placeholder = v.label.textContent + "…";
    v.skip.hidden = !(prompt && prompt.optional);
    const hadFocus = ctx.root.activeElement && v.choices.contains(ctx.root.activeElement);
    v.choices.replaceChildren();
    const opts = prompt && Array.isArray(prompt.options) ? prompt.options : [];
    for (const o of opts) {
      // {label, value}: the visitor says the label, the server stores the value
      const label = String(o && o.label !== undefined ? o.label : o);
      const b = el("button", "", label);
      b.type = "button";
      // a slot (§12) is stored as its UTC start; the visitor sees its label
      b.onclick = () => send(label, false, kind === "slot" ? String(o.value) : undefined);
      v.choices.append(b);
    }
    v.choices.hidden = !opts.length;
    if (hadFocus) v.input.focus();
  };

  v.showError = (text) => {
    v.err.textContent = text ? text[0].toUpperCase() + text.slice(1) : "";
    v.err.hidden = !text;
    if (text) v.input.setAttribute("aria-invalid", "true");
    else v.input.removeAttribute("aria-invalid");
  };

  // "Connecting…" only shows when it takes a while; other states show at once.
  let netTimer = 0;
  v.setNet = (state) => {
    clearTimeout(netTimer);
    ctx.wrap.dataset.net = state;
    const show = () => {
      v.net.textContent = T[state] || "";
      v.net.hidden = !T[state]; // "online" and "idle" have no banner
    };
    if (state === "connecting" && v.net.hidden) netTimer = setTimeout(show, 1000);
    else show();
  };
  return v;
}
