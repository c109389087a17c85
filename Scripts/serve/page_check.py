"""Drives the chat page of `finch serve` in headless Chromium (run by Scripts/serve/e2e.sh).

Asks a question and sees the answer stream in, presses Stop mid-answer, Clear, switches to an
adapter, compares the base model with an adapter side by side, and checks that an opted-in
exchange lands in the conversation log. --screenshot FILE saves the page after the comparison.
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
parser.add_argument("--url", required=True)
parser.add_argument("--log", required=True, help="the server's --conversation-log file")
parser.add_argument("--screenshot")
args = parser.parse_args()

options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 60, poll_frequency=0.05)
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def by_id(i):
    return driver.find_element(By.ID, i)


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


try:
    driver.get(args.url)
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
finally:
    driver.quit()

if failures:
    print(f"{len(failures)} page check(s) failed", file=sys.stderr)
    sys.exit(1)
print("chat page: all checks passed")
