// Getting an image from the user: sample photos, the file picker, drag and drop anywhere, paste, or a
// hand-drawn digit (28×28, white on black, like MNIST).

/** Call `onImage(blob, name)` for files picked, dropped or pasted. */
export function acceptImages({ fileInput, dropTarget = document.body, onImage }) {
  const take = (file) => {
    if (!file) return;
    onImage(file, file.name || "pasted image");
  };
  fileInput?.addEventListener("change", () => {
    take(fileInput.files?.[0]);
    fileInput.value = "";
  });
  dropTarget.addEventListener("dragover", (event) => {
    if ([...(event.dataTransfer?.types ?? [])].includes("Files")) {
      event.preventDefault();
      document.body.classList.add("dragging");
    }
  });
  dropTarget.addEventListener("dragleave", (event) => {
    if (event.target === dropTarget || !dropTarget.contains(event.relatedTarget)) document.body.classList.remove("dragging");
  });
  dropTarget.addEventListener("drop", (event) => {
    document.body.classList.remove("dragging");
    const file = event.dataTransfer?.files?.[0];
    if (file) {
      event.preventDefault();
      take(file);
    }
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items ?? [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) {
      event.preventDefault();
      take(item.getAsFile());
    }
  });
}

/** A drawing pad: thick white strokes on black; `toBlob28()` gives the 28×28 PNG the digit models read. */
export class DrawingPad {
  constructor(canvas, { onStroke = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onStroke = onStroke;
    this.drawing = false;
    this.empty = true;
    this.clear();
    const position = (event) => {
      const rect = canvas.getBoundingClientRect();
      return [((event.clientX - rect.left) / rect.width) * canvas.width, ((event.clientY - rect.top) / rect.height) * canvas.height];
    };
    canvas.addEventListener("pointerdown", (event) => {
      canvas.setPointerCapture(event.pointerId);
      this.drawing = true;
      this.empty = false;
      const [x, y] = position(event);
      this.ctx.beginPath();
      this.ctx.moveTo(x, y);
      this.ctx.lineTo(x + 0.1, y + 0.1);
      this.ctx.stroke();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!this.drawing) return;
      const [x, y] = position(event);
      this.ctx.lineTo(x, y);
      this.ctx.stroke();
    });
    const end = () => {
      if (!this.drawing) return;
      this.drawing = false;
      this.onStroke();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  clear() {
    const { ctx, canvas } = this;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = canvas.width / 12;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    this.empty = true;
  }

  /** Write a digit in a thick font, as a starting point to draw over (MNIST-like: centred, white on black). */
  drawText(text) {
    this.clear();
    const { ctx, canvas } = this;
    ctx.fillStyle = "#fff";
    ctx.font = `bold ${Math.round(canvas.height * 0.72)}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, canvas.width / 2, canvas.height * 0.54);
    this.empty = false;
  }

  /** The drawing scaled to 28×28 (the digit models' input size) as a PNG blob. */
  toBlob28() {
    const small = document.createElement("canvas");
    small.width = 28;
    small.height = 28;
    const ctx = small.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.canvas, 0, 0, 28, 28);
    return new Promise((resolve) => small.toBlob(resolve, "image/png"));
  }
}

/** Offer held-out MNIST digits (samples of kind "digit") to one-channel models, photos to the others. */
export function showSamplesFor(digits) {
  document.querySelectorAll("#samples .sample").forEach((button) => {
    button.hidden = (button.dataset.kind === "digit") !== digits;
  });
}
