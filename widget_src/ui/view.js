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
<div class="d" hidden><p></p><button type="button"></button></div>
<form novalidate><label class="sr" for="i"></label><input id="i" maxlength="1000" aria-describedby="e"><button class="k" type="button" hidden></button><button class="s" type="submit">${ICON_SEND}</button><p class="e" id="e" role="alert" hidden></p></form>
</section>`;

export const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
};

const initial = (name) => (String(name || "").trim()[0] || "?").toUpperCase();

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
    label: $("label"),
    input: $("input"),
    skip: $(".k"),
    closeBtn: $(".x"),
    err: $(".e"),
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
  $("header .av").replaceWith(badge(ctx.ds.title));
  $("#sub").textContent = ctx.ds.greeting || "";
  $("#sub").hidden = !ctx.ds.greeting;
  v.closeBtn.setAttribute("aria-label", T.close);
  $(".s").setAttribute("aria-label", T.send);
  v.log.setAttribute("aria-label", T.log);
  v.choices.setAttribute("aria-label", T.replies);
  v.skip.textContent = T.skip;
  v.doneBox.firstChild.textContent = T.done;
  v.restart.textContent = T.restart;

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
  v.row = (m) => {
    const from = m.from === "visitor" ? "visitor" : m.from === "agent" ? "agent" : "bot";
    const r = el("div", "r " + from);
    const b = el("div", "m " + (from === "visitor" ? "visitor" : "bot"));
    b.append(el("span", "sr", from === "visitor" ? T.you : T.them + " "));
    // the text's own direction (an English question in an Arabic widget reads right)
    const text = m.text ? el("span", "", m.text) : el("em", "", T.skipped);
    text.dir = "auto";
    b.append(text);
    const c = el("div", "c");
    const t = el("span", "t", time(m.ts));
    t.setAttribute("aria-hidden", "true");
    c.append(b, t);
    if (from !== "visitor") r.append(badge(from === "agent" ? m.name || "?" : ctx.ds.title));
    r.append(c);
    r.bubble = b;
    return r;
  };

  // "…is typing": three dots in a bot row, always the last row of the log.
  const typing = el("div", "r bot typing");
  const tav = badge(ctx.ds.title);
  const dots = el("div", "dots");
  dots.append(el("i"), el("i"), el("i"), el("span", "sr", T.typing));
  typing.append(tav, dots);
  let typingTimer = 0;
  v.typing = (on, ms = 4000) => {
    clearTimeout(typingTimer);
    if (!on) return typing.remove();
    v.log.append(typing);
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
      b.onclick = () => send(label);
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
