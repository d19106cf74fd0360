// A step animator shared by every animated figure: play, pause, step forward and back, go to a step.
// Like Distill's figures, it runs only while its figure is on screen, and it honours reduced motion.
// An animator whose figure is thrown away (a new explanation replacing it) must be `dispose()`d: its
// IntersectionObserver would otherwise keep watching, and keep alive, the detached figure.

const reducedMotion = () => window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;

export class Animator {
  /**
   * @param {object} options
   * @param {HTMLElement} options.figure  the element whose visibility gates playing
   * @param {(step: number) => void} options.render  draws one step from state
   * @param {number} [options.interval]  milliseconds per step
   * @param {(playing: boolean) => void} [options.onPlayChange]
   */
  constructor({ figure, render, interval = 700, onPlayChange = () => {} }) {
    this.figure = figure;
    this.render = render;
    this.interval = interval;
    this.onPlayChange = onPlayChange;
    this.count = 0;
    this.step = 0;
    this.playing = false;
    this.timer = null;
    this.visible = true;
    this.loop = false;
    this.observer = null;
    if ("IntersectionObserver" in window && figure) {
      this.observer = new IntersectionObserver((entries) => {
        this.visible = entries.some((e) => e.isIntersecting);
        if (!this.visible) this.clearTimer();
        else if (this.playing) this.schedule();
      });
      this.observer.observe(figure);
    }
  }

  /** Stop for good: no timer, no observer (call it when the figure is removed or replaced). */
  dispose() {
    this.playing = false;
    this.clearTimer();
    this.observer?.disconnect();
    this.observer = null;
  }

  setSteps(count, step = 0) {
    this.count = count;
    this.goto(Math.min(step, Math.max(0, count - 1)));
  }

  goto(step) {
    if (this.count === 0) return;
    this.step = Math.max(0, Math.min(this.count - 1, step));
    this.render(this.step);
  }

  next() {
    if (this.step >= this.count - 1) {
      if (this.loop) this.goto(0);
      else this.pause();
      return;
    }
    this.goto(this.step + 1);
  }

  prev() {
    this.goto(this.step - 1);
  }

  play() {
    if (this.count === 0) return;
    if (this.step >= this.count - 1) this.goto(0);
    this.playing = true;
    this.onPlayChange(true);
    if (reducedMotion()) {
      this.goto(this.count - 1);
      this.pause();
      return;
    }
    this.schedule();
  }

  pause() {
    this.playing = false;
    this.clearTimer();
    this.onPlayChange(false);
  }

  toggle() {
    if (this.playing) this.pause();
    else this.play();
  }

  schedule() {
    this.clearTimer();
    if (!this.visible) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.playing) return;
      this.next();
      if (this.playing) this.schedule();
    }, this.interval);
  }

  clearTimer() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Wire the usual controls (buttons with data-action play/prev/next/first/last, and a range) to an animator. */
export function bindAnimatorControls(animator, root) {
  const playButton = root.querySelector("[data-action=play]");
  const range = root.querySelector("input[type=range][data-role=step]");
  const label = root.querySelector("[data-role=step-label]");
  const actions = {
    play: () => animator.toggle(),
    prev: () => { animator.pause(); animator.prev(); },
    next: () => { animator.pause(); animator.next(); },
    first: () => { animator.pause(); animator.goto(0); },
    last: () => { animator.pause(); animator.goto(animator.count - 1); },
  };
  root.querySelectorAll("[data-action]").forEach((button) => {
    button.addEventListener("click", () => actions[button.dataset.action]?.());
  });
  range?.addEventListener("input", () => { animator.pause(); animator.goto(Number(range.value)); });
  const previousRender = animator.render;
  animator.render = (step) => {
    previousRender(step);
    if (range) {
      range.max = String(Math.max(0, animator.count - 1));
      range.value = String(step);
    }
    if (label) label.textContent = animator.count ? `step ${step + 1} of ${animator.count}` : "no steps";
  };
  const previousPlayChange = animator.onPlayChange;
  animator.onPlayChange = (playing) => {
    previousPlayChange(playing);
    if (playButton) {
      playButton.textContent = playing ? "❚❚ Pause" : "▶ Play";
      playButton.setAttribute("aria-pressed", String(playing));
    }
  };
}
