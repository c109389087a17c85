"""Drives the human-evaluation page of `finch serve` (/eval) in headless Chromium (run by
Scripts/serve/e2e.sh): three ratings (A better, B better with a note, tie by the keyboard) are
recorded in the --eval-log file, the progress reaches 3 / 3 and the Elo table is updated.
--screenshot FILE saves the page after the first rating."""
import argparse
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True)
parser.add_argument("--log", required=True, help="the server's --eval-log file")
parser.add_argument("--screenshot")
args = parser.parse_args()

options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 30, poll_frequency=0.05)
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def by_id(i):
    return driver.find_element(By.ID, i)


def progress():
    return by_id("progress_text").text


def elo_rows():
    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in driver.find_elements(By.CSS_SELECTOR, "#elo tbody tr")]


try:
    driver.get(args.url)
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
finally:
    driver.quit()

if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("eval page: all checks passed")
