// The chat page of `kvforge serve`: sends the conversation to
// /v1/chat/completions with stream: true, shows the reply as it streams,
// and polls /metrics for the KV cache's fill and bytes.
"use strict";
const messages = [];
const log = document.getElementById("log");

function line(cls, text) {
  const div = document.createElement("div");
  div.className = "msg " + cls;
  div.textContent = text;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = document.getElementById("key").value;
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function max_tokens() {
  const n = parseInt(document.getElementById("max-tokens").value, 10);
  return n > 0 ? n : 256;
}

async function send(text) {
  messages.push({ role: "user", content: text });
  line("user", "> " + text);
  const out = line("assistant", "");
  const res = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers(),
    body: JSON.stringify({ messages, stream: true, max_tokens: max_tokens(), temperature: 0.7 }),
  });
  if (!res.ok) {
    const err = await res.json().catch(() => ({ error: { message: res.statusText } }));
    out.className = "msg error";
    out.textContent = "error: " + err.error.message;
    messages.pop();
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const chunk = JSON.parse(event.slice(6));
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) out.textContent += delta.content;
      log.scrollTop = log.scrollHeight;
    }
  }
  messages.push({ role: "assistant", content: out.textContent });
}

async function poll_metrics() {
  try {
    const res = await fetch("/metrics", { headers: headers() });
    if (res.ok) {
      const m = {};
      for (const l of (await res.text()).split("\n")) {
        const [k, v] = l.split(" ");
        if (k && !k.startsWith("#")) m[k] = Number(v);
      }
      const mib = (b) => (b / 1048576).toFixed(1) + " MiB";
      document.getElementById("kv").textContent =
        `${m.kvforge_kv_blocks_used} of ${m.kvforge_kv_blocks_total} blocks in use, ` +
        `${m.kvforge_kv_blocks_cached} cached prefixes, ${mib(m.kvforge_kv_bytes_used)} of ` +
        `${mib(m.kvforge_kv_bytes)} holding tokens, ${m.kvforge_decode_tokens_per_second.toFixed(1)} tok/s`;
    }
  } catch (e) { /* the server may be restarting */ }
}

document.getElementById("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  document.getElementById("send").disabled = true;
  send(text).finally(() => { document.getElementById("send").disabled = false; });
});
setInterval(poll_metrics, 1000);
poll_metrics();
