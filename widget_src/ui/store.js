// The visitor's chat kept in localStorage (no cookies): session, cached transcript,
// frames not yet acknowledged. Blocked or full storage: the chat runs in memory.
export const load = (k) => {
  try {
    return JSON.parse(localStorage.getItem(k));
  } catch {
    return null;
  }
};

export const store = (k, v) => {
  try {
    if (v == null) localStorage.removeItem(k);
    else localStorage.setItem(k, JSON.stringify(v));
  } catch {
    /* storage full or blocked: keep working in memory */
  }
};

export const uuid = () =>
  crypto.randomUUID
    ? crypto.randomUUID()
    : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
        (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
      );

// st: {sid, token, seq, status, prompt, msgs: [{seq, from, text, ts, name}], out: [frame],
//      asked: {frame id: prompt it answers}, open, agent: name of the agent in the chat}
// msgs also holds notes {seq: n + 0.5, from: "sys", text: "joined" | "left", name}.
export const fresh = (open) => ({ msgs: [], out: [], asked: {}, open });

export const restore = (key) => {
  const saved = load(key);
  const st = { ...fresh(), ...(saved && typeof saved === "object" ? saved : {}) };
  return !Array.isArray(st.msgs) || !Array.isArray(st.out) || !st.asked ? fresh(st.open) : st;
};

export const visitorId = () => {
  let uid = load("chatlead:uid");
  if (typeof uid !== "string") store("chatlead:uid", (uid = uuid()));
  return uid;
};
