"""What the explorer does as the user moves on (issue 17): an answer of the wrong shape is shown as an error rather
than drawn from a guessed field."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

def test_a_prediction_of_another_shape_is_shown_as_an_error(page):
    """The run's answer without classes makes the page ask /predict; an answer with ``top`` instead of the API's
    ``classes`` (an older server's shape) is an error on the page, not bars drawn from a guess."""

    def without_classes(route):
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "classes": None})

    page.route("**/api/models/digits_classic/activations", without_classes)
    page.route("**/api/models/digits_classic/predict", lambda route: route.fulfill(json={
        "model_id": "digits_classic", "input_shape": [1, 1, 28, 28], "elapsed_ms": 1.0,
        "top": [{"index": 3, "label": "3", "probability": 0.9, "logit": 4.0}]}))
    page.goto("/?model=digits_classic")
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error-text").inner_text()
    assert message.startswith("predicting: ") and '"classes"' in message, message
    assert page.locator("#predictions .bar-row").count() == 0
    page.console.check()


def test_a_prediction_of_the_apis_shape_draws_its_classes(page):
    """The control for the test above: the real /predict answer draws its bars."""

    def without_classes(route):
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "classes": None})

    page.route("**/api/models/digits_classic/activations", without_classes)
    with page.expect_response("**/api/models/digits_classic/predict") as predicted:
        page.goto("/?model=digits_classic")
    assert predicted.value.ok
    page.wait_for_function("document.querySelector('#predictions .bar-label')?.textContent === '3'")
    assert page.locator("#error").is_hidden()
    page.console.check()
