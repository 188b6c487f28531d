// The drawing pad: strokes from a mouse, a pen or a finger (Pointer Events), undo and clear,
// or a chosen picture shown in their place. A drawing is sent as a PNG of exactly what it shows.

const PAPER = "#ffffff";
const INK = "#111111";
const PEN_PER_SIDE = 1 / 14;   // MNIST's strokes are about 2 pixels of its 28

export class Pad {
  /** `on.start` runs when a stroke starts, `on.end` when it ends. */
  constructor(canvas, on) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.on = on;
    this.strokes = [];       // each a list of [x, y] in canvas pixels
    this.picture = null;     // a chosen image shown instead of strokes: { bitmap, name }
    this.current = null;
    canvas.addEventListener("pointerdown", (event) => this.#start(event));
    canvas.addEventListener("pointermove", (event) => this.#extend(event));
    canvas.addEventListener("pointerup", () => this.#end());
    canvas.addEventListener("pointercancel", () => this.#end());
    this.redraw();
  }

  get empty() {
    return this.strokes.length === 0 && this.picture === null;
  }

  undo() {
    if (this.picture) this.picture = null;
    else this.strokes.pop();
    this.redraw();
  }

  clear() {
    this.strokes = [];
    this.picture = null;
    this.redraw();
  }

  /** Show a chosen image (an ImageBitmap, or null when the browser cannot decode it) instead of strokes. */
  showPicture(bitmap, name) {
    this.strokes = [];
    this.picture = { bitmap, name };
    this.redraw();
  }

  /** A PNG of the pad. Encoded at once: canvas.toBlob waits for the browser's idle time, which
   * Chromium gives it up to a second after a stroke. */
  toBlob() {
    const base64 = this.canvas.toDataURL("image/png").split(",")[1];
    return new Blob([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], { type: "image/png" });
  }

  #point(event) {
    const box = this.canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * this.canvas.width / box.width,
      (event.clientY - box.top) * this.canvas.height / box.height];
  }

  #start(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    if (this.picture) this.clear();   // drawing starts a new digit
    this.current = [this.#point(event)];
    this.strokes.push(this.current);
    this.redraw();
    this.on.start();
  }

  #extend(event) {
    if (!this.current) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const each of events.length ? events : [event]) this.current.push(this.#point(each));
    this.redraw();
  }

  #end() {
    if (!this.current) return;
    this.current = null;
    this.on.end();
  }

  redraw() {
    const { context: c, canvas } = this;
    c.fillStyle = PAPER;
    c.fillRect(0, 0, canvas.width, canvas.height);
    if (this.picture) {
      this.#drawPicture();
      return;
    }
    c.strokeStyle = INK;
    c.fillStyle = INK;
    c.lineWidth = canvas.width * PEN_PER_SIDE;
    c.lineCap = "round";
    c.lineJoin = "round";
    for (const stroke of this.strokes) {
      c.beginPath();
      if (stroke.length === 1) {   // a tap: a dot
        c.arc(stroke[0][0], stroke[0][1], c.lineWidth / 2, 0, 2 * Math.PI);
        c.fill();
        continue;
      }
      c.moveTo(...stroke[0]);
      for (const point of stroke.slice(1)) c.lineTo(...point);
      c.stroke();
    }
  }

  #drawPicture() {
    const { context: c, canvas } = this;
    const { bitmap, name } = this.picture;
    if (!bitmap) {
      c.fillStyle = INK;
      c.font = `${Math.round(canvas.width / 18)}px system-ui, sans-serif`;
      c.textAlign = "center";
      c.fillText("No preview for", canvas.width / 2, canvas.height / 2 - canvas.width / 30);
      c.fillText(name, canvas.width / 2, canvas.height / 2 + canvas.width / 20, canvas.width * 0.9);
      return;
    }
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const width = bitmap.width * scale;
    const height = bitmap.height * scale;
    c.drawImage(bitmap, (canvas.width - width) / 2, (canvas.height - height) / 2, width, height);
  }
}
