import Hummingbird

/// The human-evaluation page served at `/eval`: a question and two anonymized answers (A and B,
/// in random order), buttons (or keys 1, 2, 3) for A better / B better / tie with an optional
/// note, the progress, and the running Elo table. Self-contained, like the chat page.
enum EvalPage {
    static func response(enabled: Bool) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: enabled ? html : disabled)))
    }

    static let disabled = #"""
<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Finch human evaluation</title></head>
<body style="font: 15px/1.5 system-ui, sans-serif; margin: 40px">
<h1>Human evaluation is not set up</h1>
<p>Start the server with the answers to compare and a file for the ratings:</p>
<pre>finch generate --data questions.jsonl --output base.jsonl
finch generate --data questions.jsonl --adapter runs/x --output tuned.jsonl
finch serve --eval-answers base=base.jsonl --eval-answers tuned=tuned.jsonl --eval-log ratings.jsonl</pre>
</body></html>
"""#

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Finch human evaluation</title>
<style>
  :root { --fg: #1d232a; --muted: #66707a; --line: #d9dee3; --bg: #f6f7f9; --card: #fff; --accent: #2f6f4f; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  #progress_text { color: var(--muted); font-size: 13px; }
  progress { width: 220px; }
  main { max-width: 1200px; margin: 0 auto; padding: 16px 20px; }
  #question { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; white-space: pre-wrap; }
  .answers { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin: 14px 0; }
  .answer { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  .answer h2 { font-size: 14px; margin: 0 0 6px; color: var(--muted); }
  .answer div { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 55vh; overflow-y: auto; }
  .controls { display: flex; gap: 10px; align-items: flex-start; flex-wrap: wrap; }
  button { font: inherit; padding: 8px 16px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
  button.alt { background: var(--card); color: var(--accent); }
  button:disabled { opacity: .5; cursor: default; }
  textarea { flex: 1; min-width: 240px; font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; }
  #status { color: var(--muted); margin: 8px 0; min-height: 1.5em; }
  table { border-collapse: collapse; background: var(--card); margin-top: 8px; }
  th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: right; }
  th:nth-child(2), td:nth-child(2) { text-align: left; }
  .hint { color: var(--muted); font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>Which answer is better?</h1>
  <progress id="progress_bar" value="0" max="1"></progress>
  <span id="progress_text">…</span>
</header>
<main>
  <div id="question">Loading…</div>
  <div class="answers">
    <section class="answer"><h2>Answer A</h2><div id="answer_a"></div></section>
    <section class="answer"><h2>Answer B</h2><div id="answer_b"></div></section>
  </div>
  <div class="controls">
    <button id="choose_a">A is better (1)</button>
    <button id="choose_b">B is better (2)</button>
    <button id="choose_tie" class="alt">Tie (3)</button>
    <textarea id="note" rows="2" placeholder="Note (optional): why?"></textarea>
  </div>
  <div id="status"></div>
  <h2 style="font-size:16px">Elo so far</h2>
  <div class="hint">Start 1000, K = 32, averaged over random orders of the ratings (the same code as finch judge).</div>
  <table id="elo"><thead><tr><th>#</th><th>system</th><th>Elo</th><th>±</th><th>wins</th><th>ties</th><th>losses</th></tr></thead><tbody></tbody></table>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
let task = null, busy = false;
function headers() {
  const h = {"Content-Type": "application/json"};
  const key = localStorage.getItem("finch_api_key");
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}
function standing(s) {
  $("progress_bar").max = Math.max(1, s.total); $("progress_bar").value = s.done;
  $("progress_text").textContent = s.done + " / " + s.total + " rated";
  const body = $("elo").querySelector("tbody");
  body.replaceChildren();
  s.elo.forEach((r, i) => {
    const tr = document.createElement("tr");
    [i + 1, r.system, Math.round(r.elo), Math.round(r.spread), r.wins, r.ties, r.losses].forEach(v => {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    });
    body.appendChild(tr);
  });
}
function setButtons(on) { ["choose_a", "choose_b", "choose_tie"].forEach(id => $(id).disabled = !on); }
async function next() {
  busy = true; setButtons(false);
  try {
    const r = await fetch("/eval/next", {headers: headers()});
    const s = await r.json();
    if (!r.ok) throw new Error(s.error ? s.error.message : r.statusText);
    standing(s);
    task = s.task;
    if (!task) {
      $("question").textContent = "All pairs are rated. Thank you!";
      $("answer_a").textContent = ""; $("answer_b").textContent = "";
      return;
    }
    $("question").textContent = task.question;
    $("answer_a").textContent = task.answer_a;
    $("answer_b").textContent = task.answer_b;
    $("note").value = "";
    setButtons(true);
  } catch (e) {
    $("status").textContent = "Error: " + e.message;
  } finally { busy = false; }
}
async function rate(choice) {
  if (!task || busy) return;
  busy = true; setButtons(false);
  try {
    const r = await fetch("/eval/rate", {method: "POST", headers: headers(),
      body: JSON.stringify({task_id: task.id, choice: choice, note: $("note").value})});
    const s = await r.json();
    if (!r.ok) throw new Error(s.error ? s.error.message : r.statusText);
    standing(s);
    $("status").textContent = "Recorded: " + (choice === "tie" ? "tie" : choice + " is better") + ".";
  } catch (e) {
    $("status").textContent = "Error: " + e.message;
  }
  busy = false;
  await next();
}
$("choose_a").onclick = () => rate("A");
$("choose_b").onclick = () => rate("B");
$("choose_tie").onclick = () => rate("tie");
document.addEventListener("keydown", e => {
  if (document.activeElement === $("note")) return;
  if (e.key === "1") rate("A"); else if (e.key === "2") rate("B"); else if (e.key === "3") rate("tie");
});
next();
</script>
</body>
</html>
"""#
}
