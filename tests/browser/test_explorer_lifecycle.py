"""What the explorer keeps as the user moves on (issue 17): replaced explanations leave no IntersectionObserver
watching their detached figures, the receptive-field cache stays bounded, and an answer of the wrong shape is
shown as an error rather than drawn from a guessed field."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

#: wraps IntersectionObserver to know, at any time, every target still observed (not unobserved or disconnected)
OBSERVER_SPY = """(() => {
  const Native = window.IntersectionObserver;
  const spy = { created: 0, live: new Set() };
  window.__observers = spy;
  window.IntersectionObserver = class extends Native {
    constructor(callback, options) {
      super(callback, options);
      this.targets = new Set();
      spy.created += 1;
    }
    observe(target) {
      this.targets.add(target);
      spy.live.add(this);
      super.observe(target);
    }
    unobserve(target) {
      this.targets.delete(target);
      if (!this.targets.size) spy.live.delete(this);
      super.unobserve(target);
    }
    disconnect() {
      this.targets.clear();
      spy.live.delete(this);
      super.disconnect();
    }
  };
})();"""

OBSERVERS = """() => {
  const live = [...window.__observers.live];
  const targets = live.flatMap((o) => [...o.targets]);
  return { created: window.__observers.created, live: live.length,
           detached: targets.filter((t) => !t.isConnected).length };
}"""


def first_maps_ready(page) -> None:
    page.wait_for_function("window.cnnVis && window.cnnVis.firstFeatureMapMs !== null", timeout=30_000)


def test_replaced_explanations_and_networks_leave_no_observers_behind(page):
    page.add_init_script(OBSERVER_SPY)
    page.goto("/?model=digits_classic&unit=conv2,5,4,4")
    page.wait_for_selector("#detail-body [data-family] .op-stage > *", timeout=20_000)
    first = page.evaluate(OBSERVERS)
    assert first["detached"] == 0 and first["live"] >= 3  # the network's columns, its animator, the explanation's
    page.locator("#unit-canvas").focus()
    # each unit's explanation replaces the last, with an animator of its own (conv2 is 10×10: x goes 5…9)
    for x in range(5, 10):
        created = page.evaluate("window.__observers.created")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"document.querySelector('#detail-title').textContent.endsWith('unit [5, 4, {x}]')")
        page.wait_for_function(f"window.__observers.created > {created}")
        page.wait_for_selector("#detail-body [data-family] .op-stage > *")
        now = page.evaluate(OBSERVERS)
        assert now["detached"] == 0, f"unit x={x}: observers still watch detached figures: {now}"
        assert now["live"] == first["live"], now
    # another model replaces the whole network view (its columns are observed, the old ones no longer) and
    # closes the explanation, whose animator stops for good
    page.select_option("#model", "digits_resnet")
    page.wait_for_selector("#detail", state="hidden")
    page.wait_for_selector('.layer.loaded[data-node="stem_conv"]', timeout=30_000)
    now = page.evaluate(OBSERVERS)
    assert now["detached"] == 0 and now["live"] == first["live"] - 1, now
    page.console.check()


#: asks detail.js's receptive-field cache for conv1's unit (0, y, 0), one y after another
ASK_FIELDS = """async (ys) => {
  const { DetailView } = await import("/static/js/detail.js");
  const view = Object.create(DetailView.prototype);
  view.context = { model: "digits_classic", run: { run_id: "none" } };
  const failures = [];
  for (const y of ys) {
    try {
      await view.unitField("conv1", { channel: 0, y, x: 0 });
    } catch (err) {
      failures.push(y);
    }
  }
  return failures;
}"""


def test_the_receptive_field_cache_keeps_only_the_most_recently_used(page):
    page.goto("/?model=digits_classic")
    first_maps_ready(page)
    limit = page.evaluate("async () => (await import('/static/js/detail.js')).FIELD_CACHE_LIMIT")
    asked: list[int] = []

    def answer(route):
        y = route.request.post_data_json["index"][1]
        asked.append(y)
        if y == -1:
            route.fulfill(status=422, json={"detail": "unit outside the map"})
        else:
            route.fulfill(json={"box": [], "layers": {}})

    page.route("**/api/models/*/receptive-field", answer)

    def ask(*ys: int) -> list[int]:
        asked.clear()
        page.evaluate(ASK_FIELDS, list(ys))
        return list(asked)

    assert ask(*range(limit)) == list(range(limit))  # a full cache
    assert ask(0) == []  # cached, and now the most recently used
    assert ask(limit) == [limit]  # one more: the least recently used (1) makes room, not 0
    assert ask(0, *range(2, limit + 1)) == []
    assert ask(1) == [1]  # it was dropped
    assert ask(*range(limit + 1, 4 * limit)) == list(range(limit + 1, 4 * limit))
    assert ask(0, 1, limit) == [0, 1, limit]  # long gone: the cache did not grow past its bound
    # a refusal is not kept: asked again, it is asked of the API again
    assert page.evaluate(ASK_FIELDS, [-1]) == [-1] and asked[-1] == -1
    assert ask(-1) == [-1]
    page.console.check(ignore=["422"])


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
