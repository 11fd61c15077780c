// chatlead admin: show every <time datetime> in the browser's local time (a relative
// one, data-ago, keeps its "3 min ago" and gets the local time as its title).
(function () {
  "use strict";
  var day = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
  });
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  document.querySelectorAll("time[datetime]").forEach(function (node) {
    var at = new Date(node.getAttribute("datetime"));
    if (isNaN(at.getTime())) { return; }
    if (node.hasAttribute("data-ago")) {
      node.title = day.format(at);
      return;
    }
    node.title = node.textContent.trim();
    node.textContent = day.format(at);
  });
  document.querySelectorAll("[data-zone]").forEach(function (node) {
    node.textContent = "Times in " + zone;
  });
})();
