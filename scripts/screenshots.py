"""Take the README's screenshots of every page: ``python scripts/screenshots.py [--out docs/screenshots]``.

Starts the app on a free port with a temporary data directory, drives Debian's chromium
(/usr/bin/chromium) with Playwright at 1280×720 (a projector's size), and writes one PNG per view.
Never downloads a browser: without /usr/bin/chromium it stops with a message.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# (file name, path, what to wait for, optional script run before the shot, full page?)
VIEWS = [
    ("explorer.png", "/?model=efficientnet_lite0&sample=cat.jpg&unit=stem.relu6,5,56,60",
     "#detail-body .op-stage, #detail-body .step-text", None, False),
    ("explorer-digits-convolution.png", "/?model=digits_classic&unit=conv2,5,4,4",
     "#detail .op-stage .grid", "document.querySelector('#detail [data-action=first]').click();"
     "document.querySelector('#detail [data-action=next]').click();"
     "document.querySelector('#detail').scrollIntoView()", True),
    ("explorer-lecture-mode.png", "/?model=digits_classic&lecture=1&layer=conv2", ".layer.current.loaded", None, False),
    # a lecture hall's projector at 1280×720: large type, the sidebar folded away, the lecture ending on the answer
    ("explorer-projector.png", "/?model=efficientnet_lite0&sample=cat.jpg&lecture=1&projector=1&layer=(probabilities)",
     ".layer.probabilities.current", None, False),
    # the whole network as a graph (digits_resnet: its skip connection drawn as an arc)
    ("explorer-overview.png", "/?model=digits_resnet&overview=1&layer=conv2", "#overview svg .ov-node", None, False),
    # the kernel sliding over the real input map of a convolution, its output built step by step
    ("explorer-kernel-slide.png", "/?model=digits_classic&unit=conv1,0,5,5", "#detail .slide-figure canvas",
     "document.querySelector('#detail .slide-figure').scrollIntoView()", False),
    ("arithmetic.png", "/arithmetic?size=8&stride=3&step=3", "#input-grid .cell.window", None, True),
    ("receptive-fields.png", "/receptive-fields?source=spec&layer=pool2", "#rf-table tr.selected", None, True),
    ("attention.png", "/attention?model=efficientnet_lite0&sample=cat.jpg&compare=gradcam,layercam,saliency",
     '.map-card.done[data-method="saliency"]', None, False),
    ("attention-learned.png", "/attention?model=digits_resnet&method=learned_attention&compare=gradcam",
     '.map-card.done[data-method="learned_attention"]', None, True),
    ("upload.png", "/upload", "#uploaded", None, False),
    # the recurrent page: the LSTM half-way down a "7", its gates as strips, the prediction so far
    ("recurrent.png", "/recurrent?sample=digit-7.png&step=11", "#weight-bars .weight-bar", None, False),
    # what the network learned: an atlas (top digits and, after "Visualise every channel", each channel's picture),
    # t-SNE of the held-out digits at pool2, backpropagation with one unit's chain rule, and an adversarial "2"
    ("learned-channels.png", "/learned?view=channels&ch_model=digits_classic&ch_layer=relu2&ch_k=4",
     "#view-channels .channel-cell .example", "document.querySelector('#ch-visualise-all').click()", True),
    ("learned-representations.png",
     "/learned?view=representations&repModel=digits_classic&repNode=pool2&repMethod=tsne",
     "#rep-kl:not([hidden])", None, True),
    ("learned-backprop.png", "/learned?view=backprop&bpModel=digits_classic&bpSample=digit-7.png&bpLabel=3&bpStep=2"
     "&bpUnit=conv2@15,2,2", "#bp-chain-body .bp-total", None, True),
    ("learned-adversarial.png", "/learned?view=adversarial&advModel=digits_classic&advSample=digit-2.png",
     "#view-adversarial #adv-original-bars .bar-row", None, True),
    # the training lab: the batch-norm comparison, both runs trained to the end (about 15 s)
    ("training.png", "/training", "#presets", "document.querySelector('[data-preset=bn]').click();"
     "setTimeout(() => document.querySelector('#start-both').click(), 300)", True),
]
#: shots that need more than a selector: a condition (JavaScript) to wait for after the script ran
READY_AFTER_SCRIPT = {
    "learned-channels.png": "document.querySelectorAll('#ch-grid img.vis-image').length >= 16",
    "learned-representations.png": "document.querySelectorAll('#rep-probes-table tbody tr').length >= 3",
    "learned-adversarial.png": "document.querySelector('#adv-chart svg') !== null",
    "training.png": "['a', 'b'].every(r => /done/i.test(document.querySelector(`#${r}-status`).textContent))",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server stopped while starting")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer {url} within {timeout:.0f} s")


def wait_until(page, condition: str, timeout: float) -> None:
    """Poll a JavaScript condition from here: Playwright's wait_for_function evaluates a string, which the pages'
    CSP (script-src 'self', no 'unsafe-eval') forbids, while page.evaluate goes through the debugger protocol."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):
        if time.monotonic() > deadline:
            raise SystemExit(f"not ready within {timeout:.0f} s: {condition}")
        page.wait_for_timeout(250)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="take only these shots (e.g. recurrent.png)")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit("Debian's chromium is not installed (/usr/bin/chromium): apt-get install chromium")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cnn-vis-shots-") as data_dir:
        cache = REPO / "data" / "cache"
        if cache.is_dir():  # reuse converted weights
            os.symlink(cache, Path(data_dir) / "cache")
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env={**os.environ, "CNN_VIS_DATA_DIR": data_dir})
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{base}/api/health", server)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720}, base_url=base)
                # a returning visitor (no first-visit guide over the shots) whose mode is only what each address says
                page.add_init_script('try { localStorage.setItem("cnn-vis-guide-seen", "1");'
                                     ' sessionStorage.removeItem("cnn-vis-projector"); } catch (e) {}')
                for name, path, selector, script, full_page in VIEWS:
                    if args.only and name not in args.only:
                        continue
                    page.goto(path)
                    page.wait_for_selector(selector, timeout=60_000)
                    if full_page:  # sticky bars would be painted mid-page (CSSOM: the CSP allows it)
                        page.evaluate("document.querySelectorAll('.site-header, .toolbar').forEach("
                                      "e => e.style.setProperty('position', 'static', 'important'))")
                    if script:
                        page.evaluate(script)
                    if name in READY_AFTER_SCRIPT:
                        wait_until(page, READY_AFTER_SCRIPT[name], timeout=300)
                    page.wait_for_timeout(600)  # let images decode and transitions settle
                    page.screenshot(path=args.out / name, full_page=full_page)
                    print(f"{args.out / name}")
                if not args.only or "explorer-guide.png" in args.only:
                    # a first visit: the guide's first step over the maps it explains
                    first = browser.new_page(viewport={"width": 1280, "height": 720}, base_url=base)
                    first.goto("/?model=digits_classic")
                    first.wait_for_selector("#guide:not([hidden])", timeout=60_000)
                    first.wait_for_timeout(600)
                    first.screenshot(path=args.out / "explorer-guide.png")
                    print(f"{args.out / 'explorer-guide.png'}")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
