"""Drives the live training page in headless Chromium (run by training_page_check.sh).

  training_page_check.py live --url URL --prompts FILE [--screenshot FILE]
    During a `finch train --ui` run: the step counter advances and the loss chart gains points, the
    sample answers of the first evaluation appear (for the prompts of FILE), a reload shows the same
    run (no lower step, no fewer points, the answers), and the run is followed to "finished".
  training_page_check.py finished --url URL --steps N --evals E
    `finch ui RUN_DIR` on the finished run: status finished, step N of N, N loss points and E held-out ones.
"""
import argparse
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("mode", choices=["live", "finished"])
parser.add_argument("--url", required=True)
parser.add_argument("--prompts")
parser.add_argument("--steps", type=int)
parser.add_argument("--evals", type=int)
parser.add_argument("--screenshot")
args = parser.parse_args()

options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 90, poll_frequency=0.05)
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


# Every read is one script run in the page: the page redraws its charts and sample list as events
# arrive, so an element found in one call may be gone by the next (a stale element reference).
def text(i):
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : '';", i)


def step():
    t = text("step")
    return int(t) if t.isdigit() else -1


def points(chart="loss"):
    return driver.execute_script(
        "const e = document.querySelector('#chart_' + arguments[0] + ' svg');"
        "return e ? parseInt(e.getAttribute('data-points') || '0') : 0;", chart)


def eval_points():
    return driver.execute_script(
        "return document.querySelectorAll('#chart_loss g.series[data-key=\"eval_loss\"] circle').length;")


def samples():
    """The sample list as one snapshot: [{prompt, answer, step}]."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#samples .sample')).map(s => ({"
        "prompt: (s.querySelector('.prompt') || {}).innerText || '',"
        "answer: (s.querySelector('.answer') || {}).innerText || '',"
        "step: s.getAttribute('data-step')}));")


try:
    driver.get(args.url)
    if args.mode == "live":
        prompts = [l.strip() for l in open(args.prompts, encoding="utf-8") if l.strip()]
        wait.until(lambda d: step() > 0 and points() > 0)
        s1, p1 = step(), points()
        wait.until(lambda d: step() >= s1 + 5 and points() > p1)
        check(True, f"the step counter advances ({s1} -> {step()}) and the loss chart gains points ({p1} -> {points()})")
        for c in ["lr", "grad_norm", "throughput", "memory"]:
            check(points(c) > 0, f"chart {c} has points")
        check(text("eta") not in ("", "–"), f"an ETA is shown ({text('eta')})")
        wait.until(lambda d: len(samples()) == len(prompts))
        shown = samples()
        check([s["prompt"] for s in shown] == prompts and all(s["answer"] for s in shown),
              f"the first evaluation's sample answers appear (step {shown[0]['step']})")
        check(eval_points() >= 1, "the held-out loss is on the loss chart")
        before_step, before_points = step(), points()
        driver.refresh()
        wait.until(lambda d: step() > 0 and points() > 0 and len(samples()) >= len(prompts))
        check(step() >= before_step and points() >= before_points,
              f"after a reload the same run: step {step()} >= {before_step}, {points()} >= {before_points} points, the answers")
        wait.until(lambda d: text("status") == "finished")
        total = text("total")
        check(text("step") == total, f"followed to the end: step {text('step')} of {total}, status finished")
        check("learning_rate" in text("settings"), "the settings are listed")
        if args.screenshot:
            driver.execute_script("window.scrollTo(0, 0)")
            time.sleep(0.3)
            driver.save_screenshot(args.screenshot)
            print("screenshot: " + args.screenshot)
    else:
        wait.until(lambda d: text("status") == "finished")
        check(text("step") == str(args.steps) and text("total") == str(args.steps), f"finch ui: step {text('step')} of {text('total')}")
        check(points() == args.steps + args.evals, f"finch ui: {points()} loss points ({args.steps} training + {args.evals} held-out)")
        check(eval_points() == args.evals, f"finch ui: {eval_points()} held-out points")
        check(len(samples()) > 0, "finch ui: the last evaluation's sample answers")
finally:
    driver.quit()

if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
