// Predictions as a horizontal bar chart: label, probability bar, percentage.
const pct = (p) => `${(100 * p).toFixed(p >= 0.1 ? 1 : 2)}%`;

export function drawBars(container, classes) {
  if (!classes || !classes.length) {
    container.innerHTML = '<p class="small muted">This model\'s output is not a list of classes.</p>';
    return;
  }
  container.replaceChildren(...classes.map((c) => {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.setAttribute("role", "img");
    row.setAttribute("aria-label", `${c.label}: ${pct(c.probability)}`);
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = c.label;
    label.title = `${c.label} (class ${c.index}, logit ${c.logit?.toFixed?.(3) ?? ""})`;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${Math.max(0.5, 100 * c.probability)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = pct(c.probability);
    row.append(label, track, value);
    return row;
  }));
}
