"""Drives a page of `finch serve` in headless Chromium (run by Scripts/checks/serve/e2e.sh).

  page_check.py chat --url http://HOST:PORT/ --log CONVERSATION_LOG [--screenshot FILE]
    The chat page: asks a question and sees the answer stream in, presses Stop mid-answer, Clear,
    switches to an adapter, compares the base model with an adapter side by side, and checks that an
    opted-in exchange lands in the conversation log (the server's --conversation-log file).
    --screenshot FILE saves the page after the comparison.
  page_check.py eval --url http://HOST:PORT/eval --log EVAL_LOG [--screenshot FILE]
    The human-evaluation page: three ratings (A better, B better with a note, tie by the keyboard)
    are recorded in the --eval-log file, the progress reaches 3 / 3 and the Elo table is updated.
    --screenshot FILE saves the page after the first rating.
"""
import argparse
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("page", choices=["chat", "eval"])
parser.add_argument("--url", required=True)
parser.add_argument("--log", required=True, help="the server's --conversation-log (chat) or --eval-log (eval) file")
parser.add_argument("--screenshot")
args = parser.parse_args()

# Window height and patience per page (the chat page streams long answers).
window, patience = {"chat": ("1280,860", 60), "eval": ("1280,900", 30)}[args.page]
options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={window}"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, patience, poll_frequency=0.05)
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def by_id(i):
    return driver.find_element(By.ID, i)


# --- the chat page ---

def set_value(i, v):
    e = by_id(i)
    e.clear()
    e.send_keys(str(v))


def assistants():
    return driver.find_elements(By.CSS_SELECTOR, ".message.assistant")


def ask(text):
    box = by_id("prompt")
    box.clear()
    box.send_keys(text)
    by_id("send").click()


def idle():
    return by_id("send").is_enabled() and not by_id("stop").is_enabled()


def chat_page():
    wait.until(lambda d: len(Select(by_id("adapter")).options) >= 3)
    check(Select(by_id("adapter")).options[0].get_attribute("value") == "smollm2-135m",
          "adapter picker lists the base first, then " + ", ".join(o.get_attribute("value") for o in Select(by_id("adapter")).options[1:]))

    # 1. A long answer streams in; Stop ends it mid-way.
    set_value("temperature", 0.9)
    set_value("max_tokens", 1500)
    set_value("system", "You are a storyteller who writes very long stories.")
    ask("Tell me a long story about a dragon and a lighthouse keeper.")
    lengths = []
    wait.until(lambda d: assistants() and len(assistants()[-1].text) > 40)
    for _ in range(5):
        lengths.append(len(assistants()[-1].text))
        time.sleep(0.15)
    check(lengths[-1] > lengths[0], f"answer streams in (lengths {lengths})")
    by_id("stop").click()
    wait.until(lambda d: idle())
    msg = assistants()[-1]
    check(msg.get_attribute("data-finish") == "stopped", f"Stop ends the answer (finish '{msg.get_attribute('data-finish')}')")
    n = len(msg.text)
    time.sleep(0.5)
    check(len(assistants()[-1].text) == n, "nothing arrives after Stop")

    # 2. Clear empties the conversation.
    by_id("clear").click()
    check(len(driver.find_elements(By.CSS_SELECTOR, ".message")) == 0, "Clear empties the conversation")

    # 3. An adapter answers, logged on request; Markdown renders.
    set_value("temperature", 0)
    set_value("max_tokens", 60)
    set_value("system", "")
    Select(by_id("adapter")).select_by_value("lora")
    heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".column h2")]
    check(heads == ["lora"], f"adapter switch shows one column for it: {heads}")
    by_id("log").click()
    ask("Write a Python function that adds two numbers, in a code block.")
    wait.until(lambda d: idle() and assistants() and assistants()[-1].get_attribute("data-finish") not in (None, ""))
    finish = assistants()[-1].get_attribute("data-finish")
    check(finish in ("stop", "length"), f"adapter answer finished ({finish}): {assistants()[-1].text[:60]!r}")
    pres = driver.find_elements(By.CSS_SELECTOR, ".message.assistant pre code")
    print(f"     code blocks rendered: {len(pres)}")
    with open(args.log) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    check(len(entries) >= 1 and entries[-1]["model"] == "lora" and "Python function" in entries[-1]["messages"][-1]["content"],
          f"opted-in exchange is in the conversation log ({len(entries)} entries)")
    by_id("log").click()

    # 4. Compare mode: the base and the adapter answer side by side.
    by_id("compare").click()
    heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".column h2")]
    check(heads == ["smollm2-135m (base)", "lora"], f"compare mode shows two columns: {heads}")
    ask("What is the capital of France?")
    wait.until(lambda d: idle() and len(assistants()) == 2 and all(a.get_attribute("data-finish") for a in assistants()))
    texts = [a.text for a in assistants()]
    check(all(len(t) > 0 for t in texts), "both columns answered: " + " | ".join(repr(t[:40]) for t in texts))
    ask("And of Italy?")
    wait.until(lambda d: idle() and len(assistants()) == 4 and all(a.get_attribute("data-finish") for a in assistants()))
    check(len(driver.find_elements(By.CSS_SELECTOR, ".column:nth-child(1) .message.user")) == 2, "each column keeps its conversation")
    if args.screenshot:
        driver.save_screenshot(args.screenshot)
        print(f"     screenshot: {args.screenshot}")


# --- the human-evaluation page ---

def progress():
    return by_id("progress_text").text


def elo_rows():
    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in driver.find_elements(By.CSS_SELECTOR, "#elo tbody tr")]


def eval_page():
    wait.until(lambda d: by_id("answer_a").text and progress() == "0 / 3 rated")
    check(True, "the page shows a question, two answers and 0 / 3 rated")
    shown = (by_id("question").text, by_id("answer_a").text, by_id("answer_b").text)
    check(all(shown) and shown[1] != shown[2], "question and two different answers shown")
    check(not elo_rows(), "no Elo rows (so no system names) before the first rating")

    by_id("choose_a").click()
    wait.until(lambda d: progress() == "1 / 3 rated" and by_id("answer_a").text)
    check(True, "A better: recorded, 1 / 3 rated, the next pair shown")
    rows = elo_rows()
    check(len(rows) == 2 and {r[1] for r in rows} == {"base", "tuned"} and rows[0][2] == "1016" and rows[1][2] == "984",
          f"Elo after one win: 1016 / 984 (got {rows})")
    if args.screenshot:
        driver.save_screenshot(args.screenshot)

    by_id("note").send_keys("B is more specific")
    by_id("choose_b").click()
    wait.until(lambda d: progress() == "2 / 3 rated" and by_id("answer_a").text)
    check(True, "B better with a note: recorded, 2 / 3 rated")

    driver.find_element(By.TAG_NAME, "body").send_keys("3")
    wait.until(lambda d: progress() == "3 / 3 rated")
    wait.until(lambda d: "All pairs are rated" in by_id("question").text)
    check(True, "tie by the keyboard (3): recorded, 3 / 3 rated, the page says all are rated")
    rows = elo_rows()
    check(len(rows) == 2 and sum(int(r[4]) for r in rows) == 2 and all(int(r[5]) == 1 for r in rows),
          f"Elo table updated: two wins in all, one tie each (got {rows})")

    lines = [json.loads(l) for l in open(args.log) if l.strip()]
    check(len(lines) == 3, f"three ratings in the log (got {len(lines)})")
    check([l["choice"] for l in lines] == ["A", "B", "tie"], "choices A, B, tie in order")
    check(lines[1]["note"] == "B is more specific" and lines[0]["note"] is None, "the note is kept with its rating")
    check(lines[0]["winner"] == lines[0]["a"] and lines[1]["winner"] == lines[1]["b"] and lines[2]["winner"] == "tie",
          "winners follow the sides shown")


try:
    driver.get(args.url)
    {"chat": chat_page, "eval": eval_page}[args.page]()
finally:
    driver.quit()

if failures:
    print(f"{len(failures)} {args.page} page check(s) failed", file=sys.stderr)
    sys.exit(1)
print(f"{args.page} page: all checks passed")
