"""The learned page's "Fooling the network" view in a real browser: a held-out digit attacked with FGSM and PGD,
the pictures, predictions and perturbation as the API answers them, the state in the URL, a targeted attack, the
accuracy-against-ε chart and its numbers, and a photo model (no curve: the API says why)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"
VIEW = "/learned?view=adversarial"


def open_view(page, query: str = "") -> None:
    page.goto(VIEW + query)
    page.wait_for_selector("#view-adversarial #adv-original-bars .bar-row", timeout=30_000)


def attack_beside(page, model: str, sample: str, query: str) -> dict:
    """The API's own answer for a shipped sample, asked beside the page."""
    image = {"name": sample, "mimeType": "image/png", "buffer": (SAMPLES / sample).read_bytes()}
    answer = page.request.post(f"/api/models/{model}/adversarial?{query}", multipart={"image": image})
    assert answer.ok, answer.text()
    return answer.json()


def bar_texts(page, selector: str) -> list[str]:
    return page.locator(f"{selector} .bar-row").evaluate_all("rows => rows.map(r => r.getAttribute('aria-label'))")


def as_bar_text(c: dict) -> str:
    p = c["probability"]
    return f"{c['label']}: {100 * p:.{1 if p >= 0.1 else 2}f}%"


def npy(page, url: str) -> np.ndarray:
    response = page.request.get(url)
    assert response.ok, response.text()
    return np.load(io.BytesIO(response.body()), allow_pickle=False)


def test_a_digit_is_attacked_with_fgsm_as_the_api_answers(page):
    open_view(page)
    assert page.locator("#adv-model").input_value() == "digits_classic"
    first = page.locator('#adv-samples .sample[data-kind="digit"]').first.get_attribute("data-file")
    assert page.locator(f'#adv-samples .sample[data-file="{first}"]').get_attribute("aria-pressed") == "true"
    assert page.locator('#adv-samples .sample[data-kind="photo"]').first.is_hidden()
    expected = attack_beside(page, "digits_classic", first, "method=fgsm&epsilon=0.2")
    assert bar_texts(page, "#adv-original-bars") == [as_bar_text(c) for c in expected["original"]["predictions"]]
    assert bar_texts(page, "#adv-adversarial-bars") == [as_bar_text(c) for c in expected["adversarial"]["predictions"]]
    for image, side in (("#adv-original", "original"), ("#adv-adversarial", "adversarial")):
        assert page.locator(image).get_attribute("src") == expected[side]["picture_png"]
    assert page.locator("#adv-perturbation").get_attribute("src") == expected["perturbation"]["png"]
    verdict = page.locator("#adv-verdict").inner_text()
    assert verdict.startswith("Fooled" if expected["fooled"] else "Not fooled") and "FGSM at ε = 0.2" in verdict
    # the scale is stated: −ε, 0, +ε and the amplification
    assert page.locator("#adv-scale .adv-scale-ticks").inner_text().split() == ["−0.2", "0", "+0.2"]
    assert "Amplified ×5: full colour is a change of ±0.2" in page.locator("#adv-scale").inner_text()
    # the attention maps before and after
    assert page.locator("#adv-attention").is_visible()
    before = expected["original"]["attention"]["overlay_png"]
    assert page.locator("#adv-attention-before").get_attribute("src") == before
    assert "Grad-CAM" in page.locator("#adv-attention-note").inner_text()
    # the perturbation the page links to stays within ε
    link = page.locator("#adv-downloads a", has_text="perturbation").get_attribute("href")
    assert np.abs(npy(page, link)).max() <= 0.2
    page.console.check()


def test_pgd_state_lives_in_the_url(page):
    open_view(page)
    page.locator("#adv-method").select_option("pgd")
    assert page.locator("#adv-pgd").is_visible()
    page.locator("#adv-steps").fill("5")
    page.locator("#adv-steps").dispatch_event("change")
    page.locator("#adv-eps").fill("0.1")
    page.locator("#adv-eps").dispatch_event("change")
    page.wait_for_function("document.querySelector('#adv-verdict').textContent.includes('PGD at ε = 0.1, 5 steps')")
    assert "advMethod=pgd" in page.url and "advSteps=5" in page.url and "advEps=0.1" in page.url
    # the step size the page states is the API's default, 2.5 · ε / steps
    assert "= 0.05" in page.locator("#adv-alpha").inner_text()
    page.goto(page.url)  # a shared link opens the same view
    page.wait_for_function("document.querySelector('#adv-verdict').textContent.includes('PGD at ε = 0.1, 5 steps')")
    assert page.locator("#adv-method").input_value() == "pgd"
    assert page.locator("#adv-steps").input_value() == "5"
    page.console.check()


def test_a_targeted_attack(page):
    open_view(page, "&advMethod=pgd&advSteps=20&advEps=0.3")
    page.locator("#adv-target").select_option("3")
    page.wait_for_function("document.querySelector('#adv-verdict').textContent.includes('target')")
    first = page.locator('#adv-samples .sample[data-kind="digit"]').first.get_attribute("data-file")
    expected = attack_beside(page, "digits_classic", first, "method=pgd&epsilon=0.3&steps=20&target=3")
    assert expected["reached_target"] is True
    assert page.locator("#adv-verdict").inner_text().startswith("Fooled towards the target")
    assert "advTarget=3" in page.url
    assert "Loss of “3” (the target, lowered)" in page.locator("#adv-norms").inner_text()
    page.console.check()


def test_the_accuracy_curve_shows_the_api_numbers(page):
    open_view(page)
    page.wait_for_selector("#adv-chart svg", timeout=60_000)
    answer = page.request.get("/api/models/digits_classic/adversarial/robustness?method=fgsm")
    assert answer.status == 200  # computed once by the page's job, cached since
    curve = answer.json()
    ticks = page.locator("#adv-chart .adv-tick").all_text_contents()  # SVG text: no innerText
    assert {"0", "0.1", "0.2", "0.3", "0%", "50%", "100%"} <= set(ticks)
    rows = page.locator("#adv-curve-table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [row[0] for row in rows] == [str(e) if e else "0" for e in curve["epsilons"]]
    assert [row[1] for row in rows] == [f"{100 * a:.1f}%" for a in curve["accuracy"]]
    assert [row[2] for row in rows] == [f"{100 * f:.1f}%" for f in curve["flip_rate"]]
    # the current ε is marked on the chart
    assert page.locator("#adv-eps-label").text_content() == "ε = 0.2"
    page.console.check()


def test_a_photo_model_gets_photos_and_no_curve(page):
    open_view(page)
    page.locator("#adv-model").select_option("efficientnet_lite0")
    page.wait_for_function("document.querySelector('#adv-verdict').textContent.includes('ε = 0.03')",
                           timeout=60_000)
    assert page.locator('#adv-samples .sample[data-kind="photo"]').first.is_visible()
    assert page.locator('#adv-samples .sample[data-kind="digit"]').first.is_hidden()
    assert page.locator("#adv-scale .adv-rgb").is_visible()  # a colour model: δ per channel too
    page.wait_for_function("document.querySelector('#adv-curve-note').textContent.includes('digit classifier')")
    assert page.locator("#adv-chart svg").count() == 0
    page.console.check(ignore=["422"])


def test_an_uploaded_digit_and_tensor_are_attacked(page):
    """The picker's upload: a PNG as an image, a `.npy` as the model's own input; no sample stays pressed."""
    open_view(page)
    expected = attack_beside(page, "digits_classic", "digit-5.png", "method=fgsm&epsilon=0.2")
    with page.expect_response(lambda r: "/adversarial?" in r.url and r.request.method == "POST") as answered:
        page.locator("#adv-file").set_input_files(str(SAMPLES / "digit-5.png"))
    assert answered.value.ok
    page.wait_for_function("document.querySelector('#adv-input-name').textContent === 'Your file: digit-5.png'")
    assert page.locator('#adv-samples .sample[aria-pressed="true"]').count() == 0
    page.wait_for_function("([want]) => document.querySelector('#adv-original').getAttribute('src') === want",
                           arg=[expected["original"]["picture_png"]])
    tensor = npy(page, expected["original"]["npy_url"])  # the model's input for the same digit
    buffer = io.BytesIO()
    np.save(buffer, tensor, allow_pickle=False)
    with page.expect_response(lambda r: "/adversarial?" in r.url and r.request.method == "POST") as answered:
        page.locator("#adv-file").set_input_files(
            {"name": "five.npy", "mimeType": "application/octet-stream", "buffer": buffer.getvalue()})
    assert answered.value.ok and answered.value.request.headers["content-type"] == "application/x-npy"
    page.wait_for_function("document.querySelector('#adv-input-name').textContent === 'Your file: five.npy'")
    assert bar_texts(page, "#adv-original-bars")[0] == as_bar_text(expected["original"]["predictions"][0])
    page.console.check()
