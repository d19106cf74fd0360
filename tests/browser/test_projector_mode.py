"""Projector mode (issue 13): at 1280×720 no visible text on any page is smaller than 18 px, the mode is kept in
the address and carried to the other pages, and it is on before the first paint (nothing jumps)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

MIN_PX = 18

# (path, a selector that appears once the page has its numbers from the API)
PAGES = [
    ("/?model=digits_classic&unit=conv1,0,5,5", "#detail-body .check, #detail-body .field-block"),
    ("/?model=efficientnet_lite0&sample=cat.jpg&overview=1", "#overview svg .ov-node"),
    ("/?model=digits_classic&lecture=1&layer=pool1&unit=pool1,2,7,7", ".layer.current.loaded"),
    ("/?model=digits_classic&layer=conv1&compare=digit-7.png", "#compare-panel .compare-channel"),
    ("/?model=digits_classic&layer=fc", ".layer.current.loaded .neurons li"),  # a vector's bars and numbers
    ("/arithmetic", "#input-grid .cell.window"),
    ("/receptive-fields?model=digits_classic", "#rf-table tr[data-node]"),
    ("/attention?model=digits_classic&sample=coffee.jpg", ".map-card.done"),
    ("/recurrent", "#step-bars .bar-row"),
    ("/learned?view=channels", "#view-channels .panel"),
    ("/learned?view=backprop", "#view-backprop .panel"),
    ("/learned?view=representations", "#view-representations .panel"),
    ("/learned?view=adversarial", "#view-adversarial .panel"),
    ("/training", "#presets button"),
    ("/upload", "#uploaded p"),
]

# Every visible piece of text with the size it is drawn at on screen: HTML text at its computed font size, SVG
# text at its font size times the SVG's scale on screen, form controls at their own font size.
TEXT_SIZES = """() => {
  const out = [];
  const visible = (el) => {
    if (!el.getClientRects().length) return false;
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.visibility === "hidden" || s.display === "none" || Number(s.opacity) === 0) return false;
    }
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < document.documentElement.scrollHeight;
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const el = node.parentElement;
    const skipped = "script, style, option, .visually-hidden, .skip-link, title";
    if (!text || !el || el.closest(skipped)) continue;
    if (!visible(el)) continue;
    let size = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement) {
      const m = el.getScreenCTM();
      if (m) size *= Math.hypot(m.a, m.b);
    }
    out.push({ size, text: text.slice(0, 40), where: (el.id ? "#" + el.id : el.tagName.toLowerCase()) +
      (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") });
  }
  const controls = "input:not([type=hidden]):not([type=range]):not([type=checkbox]):not([type=radio]), select, " +
    "button, textarea";
  for (const el of document.querySelectorAll(controls)) {
    if (!visible(el) || el.closest(".visually-hidden")) continue;
    out.push({ size: parseFloat(getComputedStyle(el).fontSize), text: el.value || el.textContent.trim().slice(0, 40),
               where: el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") });
  }
  return out;
}"""


@pytest.mark.parametrize(("path", "ready"), PAGES)
def test_no_text_under_18_px_in_projector_mode(page, path, ready):
    separator = "&" if "?" in path else "?"
    page.goto(f"{path}{separator}projector=1")
    page.wait_for_selector(ready, timeout=60_000)
    page.wait_for_timeout(500)  # the last answers' text
    sizes = page.evaluate(TEXT_SIZES)
    assert len(sizes) > 10
    small = sorted({(round(s["size"], 1), s["where"], s["text"]) for s in sizes if s["size"] < MIN_PX - 0.05})
    assert not small, f"{len(small)} pieces of text under {MIN_PX} px on {path}:\n" + "\n".join(map(str, small[:40]))
    # 429: the learned views start analysis jobs, and the server runs two at once (the page says so, in large type)
    page.console.check(ignore=["404", "429"])


def test_projector_mode_is_kept_in_the_address_and_carried_to_the_other_pages(page):
    page.goto("/arithmetic")
    page.wait_for_selector("#input-grid .cell.window")
    assert page.evaluate("document.documentElement.classList.contains('projector')") is False
    small = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    page.get_by_role("button", name="Projector").click()
    assert "projector=1" in page.url
    assert page.get_by_role("button", name="Projector").get_attribute("aria-pressed") == "true"
    assert page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)") >= small * 1.4
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Receptive fields").click()
    page.wait_for_selector("#rf-table tr[data-node]")
    assert "projector=1" in page.url
    assert page.evaluate("document.documentElement.classList.contains('projector')")
    page.get_by_role("button", name="Projector").click()
    assert "projector" not in page.url
    assert page.evaluate("document.documentElement.classList.contains('projector')") is False
    page.console.check()


def test_projector_mode_is_on_before_the_first_paint(page):
    # the class is set by a classic script in <head>: the first style computed already has it, so no layout shift
    page.add_init_script("""document.addEventListener("DOMContentLoaded", () => {
      window.__projectorAtLoad = document.documentElement.classList.contains("projector");
    });""")
    page.goto("/?model=digits_classic&projector=1")
    page.wait_for_selector(".layer.loaded")
    assert page.evaluate("window.__projectorAtLoad") is True
    page.console.check()
