// The widget's one WebSocket: connect, hello, reconnect with backoff and jitter,
// keepalive, resend of unacknowledged frames after each welcome.
export function connection({ url, hello, handlers, setNet, onStop, pending, wanted }) {
  let ws = null;
  let ready = false; // welcome received on the current socket
  let tries = 0;
  let timer = 0;
  let lastRx = 0;
  const api = { stopped: false };

  const transmit = (frame) => {
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      /* the socket closed; the frame stays queued */
    }
  };
  const flush = () => pending().forEach(transmit);
  const retry = (delay) => {
    clearTimeout(timer);
    // messages waiting to go out: try at least every 5 s, so they leave soon after the
    // server is back; otherwise back off up to 30 s
    if (delay == null) delay = Math.min(pending().length ? 5000 : 30000, 400 * 2 ** tries++);
    // jitter: 50-100 % of the delay, so many widgets do not return in lockstep
    timer = setTimeout(connect, delay * (0.5 + Math.random() / 2));
  };
  const onClosed = (code) => {
    if (code === 4404) return api.stop();
    // 1000: the server let an idle, finished chat go; sending connects again
    if (code === 1000) return setNet("idle");
    setNet("offline");
    // 4429 too many / 1008 policy (e.g. origin refused): retrying soon cannot help
    if (code === 4429 || code === 1008) retry(60000 + tries++ * 30000);
    else if (code === 1012) retry(tries++ ? null : 800);
    else retry();
  };
  const receive = (f) => {
    if (!f || !handlers[f.type]) return;
    if (f.type === "welcome") {
      ready = true;
      tries = 0;
      setNet("online");
      handlers.welcome(f);
      return flush();
    }
    handlers[f.type](f);
  };
  function connect() {
    if (api.stopped || ws) return;
    clearTimeout(timer);
    timer = 0;
    setNet("connecting");
    let sock;
    try {
      sock = ws = new WebSocket(url);
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
      receive(f);
    };
    sock.onclose = (e) => {
      if (ws !== sock) return;
      ws = null;
      ready = false;
      onClosed(e.code);
    };
  }
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
    if (!ws && !api.stopped && wanted()) connect();
  };
  addEventListener("online", wake);
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && wake());

  api.connect = connect;
  api.send = (frame) => (ready ? transmit(frame) : connect());
  api.stop = () => {
    api.stopped = true;
    onStop();
  };
  // rate limited: say so, then resend what is still unacknowledged
  api.slow = () => {
    setNet("slow");
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (ready) {
        setNet("online");
        flush();
      }
    }, 2000);
  };
  // a new conversation: a new socket, so the server starts a new session
  api.restart = () => {
    const sock = ws;
    ws = null;
    ready = false;
    if (sock) sock.close(1000);
    connect();
  };
  return api;
}
