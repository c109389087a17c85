import Hummingbird

/// The browser chat served at `/`: one self-contained page (no CDN; it works offline) that talks
/// to this server's `/v1/chat/completions` with streaming. Stop, Clear, a system prompt, sampling
/// settings, an adapter picker, a compare mode that streams the base model's and an adapter's
/// answers side by side, Markdown and code rendered, and an opt-in conversation log.
enum ChatPage {
    static func response() -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Finch chat</title>
<style>
  :root { --fg: #1d232a; --muted: #66707a; --line: #d9dee3; --bg: #f6f7f9; --card: #fff; --accent: #2f6f4f; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg);
         display: grid; grid-template-columns: 270px 1fr; height: 100vh; }
  aside { border-right: 1px solid var(--line); padding: 14px; overflow-y: auto; background: var(--card); }
  aside h1 { font-size: 18px; margin: 0 0 2px; }
  aside .sub { color: var(--muted); font-size: 12px; margin-bottom: 12px; }
  label { display: block; font-size: 12px; color: var(--muted); margin: 10px 0 3px; }
  label.check { display: flex; gap: 6px; align-items: center; color: var(--fg); font-size: 14px; }
  input[type=number], input[type=password], select, textarea { width: 100%; font: inherit; padding: 5px 7px;
         border: 1px solid var(--line); border-radius: 6px; background: #fff; }
  textarea { resize: vertical; }
  main { display: flex; flex-direction: column; min-width: 0; height: 100vh; }
  #columns { flex: 1; display: grid; grid-template-columns: 1fr; gap: 12px; padding: 14px; overflow: hidden; }
  #columns.compare { grid-template-columns: 1fr 1fr; }
  .column { display: flex; flex-direction: column; min-width: 0; overflow: hidden; background: var(--card);
            border: 1px solid var(--line); border-radius: 10px; }
  .column h2 { font-size: 13px; margin: 0; padding: 7px 12px; border-bottom: 1px solid var(--line); color: var(--muted); }
  .log { flex: 1; overflow-y: auto; padding: 10px 12px; }
  .message { margin: 8px 0; padding: 8px 11px; border-radius: 8px; overflow-wrap: anywhere; }
  .message.user { background: #e8f0ec; margin-left: 15%; white-space: pre-wrap; }
  .message.assistant { background: #f2f3f5; margin-right: 8%; }
  .message.error { background: #fde8e8; color: #8a1c1c; }
  .message .meta { color: var(--muted); font-size: 11px; margin-top: 4px; }
  .message pre { background: #1e2329; color: #e6e6e6; padding: 9px; border-radius: 6px; overflow-x: auto; }
  .message code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
  .message :not(pre) > code { background: #e3e6ea; padding: 1px 4px; border-radius: 4px; }
  .message p { margin: 0 0 6px; } .message p:last-child { margin-bottom: 0; }
  form { display: flex; gap: 8px; padding: 0 14px 14px; }
  form textarea { flex: 1; min-height: 46px; max-height: 200px; }
  button { font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent);
           color: #fff; cursor: pointer; }
  button.secondary { background: #fff; color: var(--accent); }
  button:disabled { opacity: .45; cursor: default; }
  #status { color: var(--muted); font-size: 12px; padding: 0 14px 6px; min-height: 18px; }
</style>
</head>
<body>
<aside>
  <h1>Finch</h1>
  <div class="sub" id="model-info">connecting…</div>
  <label for="adapter">Model / adapter</label>
  <select id="adapter"></select>
  <label class="check"><input type="checkbox" id="compare"> Compare with the base model</label>
  <label for="system">System prompt</label>
  <textarea id="system" rows="3" placeholder="You are a helpful assistant."></textarea>
  <label for="temperature">Temperature</label>
  <input type="number" id="temperature" value="0.7" min="0" max="2" step="0.05">
  <label for="top_p">Top-p</label>
  <input type="number" id="top_p" value="0.9" min="0.01" max="1" step="0.01">
  <label for="top_k">Top-k (0 = off)</label>
  <input type="number" id="top_k" value="0" min="0" step="1">
  <label for="repetition_penalty">Repetition penalty</label>
  <input type="number" id="repetition_penalty" value="1.1" min="0.5" max="3" step="0.05">
  <label for="max_tokens">Max new tokens</label>
  <input type="number" id="max_tokens" value="512" min="1" step="1">
  <label class="check" id="log-row" title="The server appends each exchange to its conversation log (--conversation-log)">
    <input type="checkbox" id="log"> Save conversations for evaluation</label>
  <label for="api_key">API key (if the server needs one)</label>
  <input type="password" id="api_key" autocomplete="off">
</aside>
<main>
  <div id="columns"></div>
  <div id="status"></div>
  <form id="form">
    <textarea id="prompt" placeholder="Send a message (Enter sends, Shift+Enter for a new line)"></textarea>
    <button type="submit" id="send">Send</button>
    <button type="button" id="stop" class="secondary" disabled>Stop</button>
    <button type="button" id="clear" class="secondary">Clear</button>
  </form>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let info = null;            // GET /finch/info
let columns = [];           // {model, history: [{role, content}], el}
let controllers = [];       // AbortControllers of the answers in flight

function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

// ---- Markdown: code fences, inline code, headings, lists, bold / italic, links; HTML escaped first.
function escapeHTML(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
function inline(s) {
  const codes = [];
  s = s.replace(/`([^`\n]+)`/g, (_, c) => { codes.push(c); return "\u0000" + (codes.length - 1) + "\u0000"; });
  s = escapeHTML(s)
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:[^)\s]+)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => "<code>" + escapeHTML(codes[+i]) + "</code>");
}
function markdown(text) {
  const out = [];
  const parts = text.split(/```/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {                       // a code block (possibly still open while streaming)
      const nl = part.indexOf("\n");
      const lang = nl >= 0 ? part.slice(0, nl).trim() : "";
      const code = nl >= 0 ? part.slice(nl + 1) : part;
      out.push('<pre><code class="lang-' + escapeHTML(lang) + '">' + escapeHTML(code.replace(/\n$/, "")) + "</code></pre>");
      return;
    }
    let list = null;
    const flush = () => { if (list) { out.push("</" + list + ">"); list = null; } };
    let para = [];
    const endPara = () => { if (para.length) { out.push("<p>" + para.map(inline).join("<br>") + "</p>"); para = []; } };
    for (const line of part.split("\n")) {
      let m;
      if ((m = line.match(/^(#{1,6})\s+(.*)$/))) { endPara(); flush(); out.push("<h" + m[1].length + ">" + inline(m[2]) + "</h" + m[1].length + ">"); }
      else if ((m = line.match(/^\s*[-*+]\s+(.*)$/))) { endPara(); if (list !== "ul") { flush(); out.push("<ul>"); list = "ul"; } out.push("<li>" + inline(m[1]) + "</li>"); }
      else if ((m = line.match(/^\s*\d+[.)]\s+(.*)$/))) { endPara(); if (list !== "ol") { flush(); out.push("<ol>"); list = "ol"; } out.push("<li>" + inline(m[1]) + "</li>"); }
      else if (line.trim() === "") { endPara(); flush(); }
      else { flush(); para.push(line); }
    }
    endPara(); flush();
  });
  return out.join("");
}

// ---- Columns and messages.
function layout() {
  const adapter = $("adapter").value;
  const compare = $("compare").checked && adapter !== info.model;
  const models = compare ? [info.model, adapter] : [adapter];
  const same = columns.length === models.length && columns.every((c, i) => c.model === models[i]);
  if (same) return;
  stopAll();
  $("columns").innerHTML = "";
  $("columns").className = compare ? "compare" : "";
  columns = models.map((model) => {
    const el = document.createElement("section");
    el.className = "column";
    el.dataset.model = model;
    el.innerHTML = "<h2></h2><div class='log'></div>";
    el.querySelector("h2").textContent = model === info.model ? model + " (base)" : model;
    $("columns").appendChild(el);
    return {model, history: [], el};
  });
}
function addMessage(column, role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  if (role === "assistant") div.innerHTML = markdown(text); else div.textContent = text;
  const log = column.el.querySelector(".log");
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

// ---- Streaming one answer: server-sent events from /v1/chat/completions.
async function answer(column) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({role: "system", content: system});
  messages.push(...column.history);
  const body = {
    model: column.model, messages, stream: true, stream_options: {include_usage: true},
    temperature: +$("temperature").value, top_p: +$("top_p").value, top_k: +$("top_k").value,
    repetition_penalty: +$("repetition_penalty").value, max_tokens: +$("max_tokens").value,
  };
  if ($("log").checked) body.finch_log = true;
  const div = addMessage(column, "assistant", "");
  div.classList.add("streaming");
  const controller = new AbortController();
  controllers.push(controller);
  let text = "", finish = null, usage = null;
  const started = performance.now();
  try {
    const response = await fetch("/v1/chat/completions", {method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal});
    if (!response.ok) {
      const err = await response.json().catch(() => ({error: {message: response.statusText}}));
      throw new Error(err.error ? err.error.message : response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      pending += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = pending.indexOf("\n\n")) >= 0) {
        const block = pending.slice(0, cut); pending = pending.slice(cut + 2);
        if (!block.startsWith("data: ")) continue;
        const data = block.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices || []) {
          if (c.delta && c.delta.content) text += c.delta.content;
          if (c.finish_reason) finish = c.finish_reason;
        }
        div.innerHTML = markdown(text);
        const log = column.el.querySelector(".log"); log.scrollTop = log.scrollHeight;
      }
    }
  } catch (e) {
    if (e.name === "AbortError") finish = "stopped";
    else { div.classList.add("error"); text += (text ? "\n\n" : "") + "Error: " + e.message; div.innerHTML = markdown(text); finish = "error"; }
  } finally {
    controllers = controllers.filter((c) => c !== controller);
  }
  div.classList.remove("streaming");
  div.dataset.finish = finish || "";
  const meta = document.createElement("div");
  meta.className = "meta";
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  meta.textContent = (finish || "") + (usage ? " · " + usage.completion_tokens + " tokens" : "") + " · " + secs + " s";
  div.appendChild(meta);
  if (finish !== "error") column.history.push({role: "assistant", content: text});
}

async function send(event) {
  if (event) event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controllers.length) return;
  $("prompt").value = "";
  layout();
  for (const c of columns) { c.history.push({role: "user", content: text}); addMessage(c, "user", text); }
  busy(true);
  await Promise.all(columns.map(answer));
  busy(false);
}
function busy(on) {
  $("send").disabled = on; $("stop").disabled = !on;
  $("status").textContent = on ? "generating…" : "";
}
function stopAll() { for (const c of controllers) c.abort(); }
function clearAll() {
  stopAll();
  for (const c of columns) { c.history = []; c.el.querySelector(".log").innerHTML = ""; }
  $("prompt").focus();
}

async function start() {
  try {
    const r = await fetch("/finch/info", {headers: headers()});
    info = await r.json();
    if (!r.ok) throw new Error(info.error ? info.error.message : r.statusText);
  } catch (e) {
    $("model-info").textContent = "not ready: " + e.message + " (retrying)";
    setTimeout(start, 1500);
    return;
  }
  $("model-info").textContent = info.model + " · context " + info.context_length;
  const select = $("adapter");
  select.innerHTML = "";
  for (const id of [info.model].concat(info.adapters)) {
    const o = document.createElement("option");
    o.value = id; o.textContent = id === info.model ? id + " (base)" : id;
    select.appendChild(o);
  }
  $("log").disabled = !info.conversation_log;
  $("log-row").style.opacity = info.conversation_log ? 1 : 0.5;
  layout();
}

$("form").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) send(e); });
$("stop").addEventListener("click", stopAll);
$("clear").addEventListener("click", clearAll);
$("adapter").addEventListener("change", layout);
$("compare").addEventListener("change", layout);
$("api_key").value = localStorage.getItem("finch_api_key") || "";
$("api_key").addEventListener("change", () => { localStorage.setItem("finch_api_key", $("api_key").value.trim()); start(); });
start();
</script>
</body>
</html>
"""#
}
