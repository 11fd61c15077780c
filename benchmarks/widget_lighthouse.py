"""Lighthouse (mobile preset) on a host page with and without the widget tag.

    npm install --prefix /tmp/lh lighthouse@13.5.0
    CHATLEAD_REDIS_URL=redis://127.0.0.1:6379/5 python benchmarks/widget_lighthouse.py \
        --lighthouse /tmp/lh/node_modules/.bin/lighthouse --runs 3

Starts ``chatlead serve`` on a free port, serves the same content page twice from
another origin (bare, and with ``<script src=…/widget/chatlead.js async>``), runs
Lighthouse's default (mobile: 4x CPU slowdown, slow 4G) performance audit ``--runs``
times each and prints the medians: Total Blocking Time, Cumulative Layout Shift,
Largest Contentful Paint, bytes transferred, and the bytes fetched from chatlead.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BODY = (
    "<header style='background:#0a5a8c;color:#fff;padding:24px'><h1>Host page</h1></header>"
    "<main style='max-width:720px;margin:auto;padding:16px;font:18px/1.5 sans-serif'>"
    + "".join(f"<h2>Section {i}</h2><p>{'Some text of the host page. ' * 30}</p>" for i in range(8))
    + "</main>"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host(pages: dict[str, bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            page = pages.get(self.path, b"")
            self.send_response(200 if page else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def audit(lighthouse: str, url: str, chat_origin: str) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [lighthouse, url, "--only-categories=performance", "--output=json",
             f"--output-path={out.name}", "--quiet",
             "--chrome-flags=--headless=new --no-sandbox --disable-gpu"],
            check=True, env={**os.environ, "CHROME_PATH": "/usr/bin/chromium"},
        )  # fmt: skip
        report = json.loads(Path(out.name).read_text())
    audits = report["audits"]
    requests = audits["network-requests"]["details"]["items"]
    observed = audits["metrics"]["details"]["items"][0]
    return {
        "observed_lcp_ms": observed["observedLargestContentfulPaint"],
        "tbt_ms": audits["total-blocking-time"]["numericValue"],
        "cls": audits["cumulative-layout-shift"]["numericValue"],
        "lcp_ms": audits["largest-contentful-paint"]["numericValue"],
        "bytes": audits["total-byte-weight"]["numericValue"],
        "chatlead_bytes": sum(
            r.get("transferSize", 0) for r in requests if r["url"].startswith(chat_origin)
        ),
        "chatlead_requests": sum(1 for r in requests if r["url"].startswith(chat_origin)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lighthouse", default="lighthouse")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    chat = subprocess.Popen(
        [sys.executable, "-m", "chatlead", "serve", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        tag = f'<script src="{base}/widget/chatlead.js" data-site="default" async></script>'
        page = "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Host</title>"
        page += "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
        pages = {
            "/bare": f"{page}<body>{BODY}</body></html>".encode(),
            "/tagged": f"{page}<body>{BODY}{tag}</body></html>".encode(),
        }
        site = host(pages)
        origin = f"http://127.0.0.1:{site.server_port}"
        results: dict[str, dict[str, float]] = {}
        for name in pages:
            runs = [audit(args.lighthouse, origin + name, base) for _ in range(args.runs)]
            results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        site.shutdown()
    finally:
        chat.terminate()
        chat.wait(15)
    print(
        f"{'page':8} {'TBT ms':>7} {'CLS':>6} {'LCP ms':>7} {'obs. LCP':>8} {'bytes':>7} "
        f"{'chatlead B':>10}"
    )
    for name, r in results.items():
        print(
            f"{name.strip('/'):8} {r['tbt_ms']:7.0f} {r['cls']:6.3f} {r['lcp_ms']:7.0f} "
            f"{r['observed_lcp_ms']:8.0f} "
            f"{r['bytes']:7.0f} {r['chatlead_bytes']:10.0f} ({r['chatlead_requests']:.0f} req)"
        )


if __name__ == "__main__":
    main()
