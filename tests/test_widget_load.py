"""What the tag costs a host page while it loads (CONTRACT §13), in real Chromium.

The same host page is loaded with and without the tag, with the CPU slowed down 4x as
in Lighthouse's mobile preset. With the tag there is no layout shift and no long task
(> 50 ms), only the loader is fetched (the UI waits for the visitor), and hovering the
launcher prefetches the UI so the first click opens the chat at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import SITE, LeadReceiver, host_page

pytestmark = pytest.mark.browser

browser = widget_parts.browser
chat_server = widget_parts.chat_server
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

# A plain content page: text, a header, a hero, a list (what Lighthouse would see).
HOST_BODY = (
    "<header style='background:#0a5a8c;color:#fff;padding:24px'><h1>Host</h1></header>"
    "<main style='max-width:720px;margin:auto;padding:16px'>"
    + "".join(f"<h2>Section {i}</h2><p>{'Some text of the host page. ' * 30}</p>" for i in range(8))
    + "</main>"
)

# Long tasks carry no script attribution ("unknown"); long animation frames do: each
# lists the scripts that ran in it (those over 5 ms) by URL.
OBSERVE = """
window.__perf = {shifts: [], long: [], frames: []};
new PerformanceObserver((list) => {
  for (const e of list.getEntries())
    window.__perf.frames.push({start: e.startTime, duration: e.duration,
      scripts: e.scripts.map((s) => ({url: s.sourceURL, start: s.startTime,
                                       duration: s.duration}))});
}).observe({type: "long-animation-frame", buffered: true});
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__perf.shifts.push(e.value);
}).observe({type: "layout-shift", buffered: true});
new PerformanceObserver((list) => {
  for (const e of list.getEntries())
    window.__perf.long.push({start: e.startTime, duration: e.duration,
      src: e.attribution.map((a) => a.containerSrc || a.name).join(" ")});
}).observe({type: "longtask", buffered: true});
"""


def load(page: Any, server: ServerProcess | None, owner: LeadReceiver, name: str) -> Any:
    """Load a host page at 4x CPU slowdown; return its perf record once it settled."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    page.add_init_script(OBSERVE)
    host_page(page, server, owner, name, HOST_BODY, site=SITE)
    page.wait_for_load_state("load")
    if server:
        page.locator("chatlead-widget").wait_for(state="attached")
    page.wait_for_timeout(600)  # tasks queued by the load (idle callbacks) get to run
    record = page.evaluate(
        "() => ({...window.__perf, height: document.documentElement.scrollHeight,"
        " scripts: performance.getEntriesByType('resource').map((r) => r.name)})"
    )
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
    return record


def test_the_tag_adds_no_layout_shift_no_long_task_and_no_ui_during_load(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    bare = load(new_page(390, 844), None, lead_receiver, "perf-bare")
    page = new_page(390, 844)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("websocket", lambda ws: requests.append(ws.url))
    tagged = load(page, chat_server, lead_receiver, "perf-tagged")

    assert sum(tagged["shifts"]) == 0 == sum(bare["shifts"]), (bare, tagged)
    ours_ran = [
        script
        for frame in tagged["frames"]
        for script in frame["scripts"]
        if script["url"].startswith(chat_server.base)
    ]
    assert all(script["duration"] < 50 for script in ours_ran), ours_ran
    # no long task overlaps a run of our script (a run under 5 ms is not listed: it
    # cannot make a task of 50 ms)
    overlapping = [
        task
        for task in tagged["long"]
        for script in ours_ran
        if script["start"] < task["start"] + task["duration"]
        and task["start"] < script["start"] + script["duration"]
    ]
    assert overlapping == [], (overlapping, ours_ran)
    assert tagged["height"] == bare["height"], "the tag must not move the host page"
    ours = [url for url in requests if url.startswith(chat_server.base)]
    # the loader, then (after the load, when idle) the site's triggers: no UI, no socket
    assert [url.removeprefix(chat_server.base) for url in ours] == [
        "/widget/chatlead.js",
        f"/widget/triggers/{SITE}.js",
    ]

    # hover prefetches the UI; the click that follows opens at once
    launcher = page.get_by_role("button", name="Open chat")
    launcher.hover()
    page.wait_for_function(
        "() => document.querySelector('chatlead-widget').shadowRoot.querySelector('.p')"
    )
    assert any("/widget/chatlead-ui." in url for url in requests)
    assert not any("/ws" in url for url in requests), "no socket before the chat is opened"
    opened_in_the_same_task = page.evaluate(
        "() => { const root = document.querySelector('chatlead-widget').shadowRoot;"
        " root.querySelector('.l').click(); return !root.querySelector('.p').hidden; }"
    )
    assert opened_in_the_same_task
    page.get_by_text("What's your name?").wait_for()
    assert any(url.startswith(chat_server.ws_url) for url in requests)


def test_the_observers_see_a_long_task(
    lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    """A check of the check: a 120 ms script is reported as a long task."""
    page = new_page()
    page.add_init_script(OBSERVE)
    host_page(page, None, lead_receiver, "control", "<p>Control</p>")
    page.evaluate(
        "() => setTimeout(() => { const end = performance.now() + 120;"
        " while (performance.now() < end); })"
    )
    page.wait_for_function("() => window.__perf.long.length > 0")
    page.wait_for_function("() => window.__perf.frames.some((f) => f.scripts.length)")
