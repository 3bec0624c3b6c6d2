"""The Space as a person uses it: Debian's headless Chromium (driven by its chromedriver through selenium) opens the
running app, uploads a real photograph, runs it, and the page shows the class probabilities, the heatmap and the
field-of-view crop; the screenshot is saved (to $VISIONCLIP_SPACE_SCREENSHOT if set, e.g. docs/figures)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOT_ENV = "VISIONCLIP_SPACE_SCREENSHOT"
WAIT = 300  # seconds; generous, only so that a page that never updates fails instead of blocking the suite


def _installed(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: `make browser` (part of `make test`) installs Debian's chromium-driver"
    return path


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _installed("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
        options.add_argument(argument)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a browser or driver
    driver = webdriver.Chrome(options=options, service=Service(_installed("chromedriver")))
    yield driver
    driver.quit()


def _loaded_image(driver, element_id: str) -> bool:
    script = "const i = document.querySelector(`#${arguments[0]} img`); return !!(i && i.complete && i.naturalWidth);"
    return driver.execute_script(script, element_id)


def _opened_class_list(driver) -> list:
    """The options of "Heatmap for class", clicking it open (again, if a page update closed it)."""
    options = [
        option for option in driver.find_elements(By.CSS_SELECTOR, "#heatmap-class li") if option.is_displayed()
    ]
    if not options:
        driver.find_element(By.CSS_SELECTOR, "#heatmap-class input").click()
    return options


def test_a_person_uploads_a_real_photograph_and_sees_probabilities_and_heatmap(
    browser, space_url: str, real_photo: Path, tmp_path: Path
):
    browser.get(space_url)
    wait = WebDriverWait(browser, WAIT)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
    upload.send_keys(str(real_photo))
    wait.until(lambda d: real_photo.stem in d.find_element(By.ID, "photo").text)  # the name shows once uploaded
    browser.find_element(By.ID, "run").click()

    wait.until(lambda d: "%" in d.find_element(By.ID, "probabilities").text)
    wait.until(lambda d: _loaded_image(d, "heatmap") and _loaded_image(d, "crop"))
    probabilities = browser.find_element(By.ID, "probabilities").text
    # the summary names the most likely class, which the probabilities list with a percentage
    summary = browser.find_element(By.ID, "summary").text
    assert "most likely" in summary and "field of view" in summary, summary
    top = summary.split("most likely")[1].split(";")[0].strip()
    assert top in probabilities, (top, probabilities)
    heatmap = browser.find_element(By.CSS_SELECTOR, "#heatmap img")
    assert heatmap.size["width"] > 100 and heatmap.size["height"] > 100, heatmap.size

    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "space_demo.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.TAG_NAME, "body").screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # choosing another class in "Heatmap for class" swaps the heatmap for that class's
    first = heatmap.get_attribute("src")
    options = wait.until(_opened_class_list)
    other = next(option for option in options if option.text.strip() and top not in option.text)
    other.click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#heatmap img").get_attribute("src") != first)
    wait.until(lambda d: _loaded_image(d, "heatmap"))
