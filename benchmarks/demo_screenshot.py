"""A screenshot of ``dacl demo``'s page with a result, taken in headless Chromium.

    python benchmarks/demo_screenshot.py                      # the shipped model
    python benchmarks/demo_screenshot.py --ckpt_path tiny.json --out /tmp/demo_page.png

The page is served on a free local port, a photo of two synthetic faces (drawn as the tests'
data; not people) is uploaded with "Find the faces" on, and once the result is shown the whole
page is saved (default ``docs/img/demo_page.png``). One JSON line says what the page showed.

Needs ``pip install 'dacl[demo,detect]' selenium`` and Debian's ``chromium chromium-driver``
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``): the browser and its driver are named, so
Selenium Manager downloads nothing. :func:`drive` is also what tests/test_demo.py checks the page
with.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
#: Window width of the screenshot; its height is the page's.
WIDTH = 1280
#: Seconds to wait for the page, and for a result.
TIMEOUT = 60
#: The browser makes no connection of its own (updates, sync, field trials...).
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--force-device-scale-factor=1", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-features=Translate,OptimizationHints,MediaRouter",
)  # fmt: skip


def browser() -> Any:
    """Headless Chromium from the system's packages, driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        raise SystemExit(
            "needs chromium and chromedriver: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={WIDTH},900")
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def drive(
    url: str, picture: Path | int, faces: str = "detect", out: Path | None = None
) -> dict[str, Any]:
    """Open the page, pick ``faces`` (``detect`` or ``crop``), upload ``picture`` (or click the
    example of that number), wait for the result and return what the page shows: the status
    line, the labels in it, the top class of the probabilities, and the resources the page
    loaded from anywhere but ``url``. With ``out``, the whole page is saved there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser()
    try:
        wait = WebDriverWait(page, TIMEOUT)
        page.get(url)
        upload = (By.CSS_SELECTOR, "#picture input[type=file]")
        wait.until(ec.presence_of_element_located(upload))
        page.find_element(By.CSS_SELECTOR, f"#faces input[value={faces}]").click()
        if isinstance(picture, int):
            page.find_elements(By.CSS_SELECTOR, "#examples button")[picture].click()
        else:
            page.find_element(*upload).send_keys(str(Path(picture).resolve()))
        status = (By.CSS_SELECTOR, "#status")
        wait.until(lambda p: re.match(r"\d+ faces? found:|⚠️", p.find_element(*status).text))
        top = (By.CSS_SELECTOR, "#probs [data-testid=label-output-value]")
        wait.until(lambda p: p.find_elements(*top) and p.find_element(*top).text.strip())
        text = page.find_element(*status).text
        shown = {
            "status": text,
            "labels": re.findall(r"(?:\d+: )?(\S+) \d\.\d\d", text.partition("found:")[2]),
            "top": page.find_element(*top).text.strip(),
            "remote": [
                name
                for name in page.execute_script(
                    "return performance.getEntriesByType('resource').map(e => e.name)"
                )
                if not name.startswith((url.rstrip("/"), "data:", "blob:"))
            ],
        }
        if out is not None:
            wait.until(lambda p: p.execute_script(
                "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            ))  # fmt: skip
            height = page.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
            page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": WIDTH, "height": int(height), "deviceScaleFactor": 1, "mobile": False
            })  # fmt: skip
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            page.save_screenshot(str(out))
        return shown
    finally:
        page.quit()


def two_faces(path: Path) -> Path:
    """A photo of a happy and a surprised synthetic face, 3 times FER2013's size, on a plain
    background."""
    from dacl.classes import FER2013_CLASSES
    from dacl.data.synthetic import make_faces

    faces, labels = make_faces(70, seed=0)
    picked = [np.flatnonzero(labels == FER2013_CLASSES.index(c))[0] for c in ("happy", "surprise")]
    photo = np.full((224, 448), 200, np.uint8)
    for face, x in zip(faces[picked], (40, 264), strict=True):
        photo[40:184, x : x + 144] = np.asarray(Image.fromarray(face).resize((144, 144)))
    Image.fromarray(photo).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt_path", default=None, help="default: the shipped model")
    parser.add_argument("--picture", type=Path, default=None, help="default: two synthetic faces")
    parser.add_argument("--faces", choices=("detect", "crop"), default="detect")
    parser.add_argument("--out", type=Path, default=REPO / "docs/img/demo_page.png")
    args = parser.parse_args()

    from dacl.demo import model_line, serving
    from dacl.predictor import Predictor

    predictor = Predictor.load(args.ckpt_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        picture = args.picture or two_faces(Path(folder) / "two_faces.png")
        description = model_line(args.ckpt_path, predictor)
        with serving(predictor, description, port=port) as page:
            shown = drive(page.local_url, picture, args.faces, args.out)
    print(json.dumps({"out": str(args.out), **shown}))
    sys.exit(1 if shown["remote"] or not shown["labels"] else 0)


if __name__ == "__main__":
    main()
