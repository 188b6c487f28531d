// The page's wiring: what the user does (draw, undo, clear, choose, drop, paste, photograph,
// pick a bar) -> one request to /explanations -> the answer or the sentence that explains a refusal.
// A bar other than the answer's asks "why the answer and not this digit?"; the answer's own bar
// asks "why this digit?".

import { Refusal, adoptKeyFromLink, explain, ping, useKey } from "./api.js";
import { Pad } from "./pad.js";
import { buildBars, showAnswer } from "./view.js";

const READ_AFTER_MS = 350;   // a pause after a stroke reads the digit: a 4 or a 7 drawn in two strokes is read once

const $ = (selector) => document.querySelector(selector);
const elements = {
  digit: $("#digit"), confidence: $("#confidence"), doubt: $("#doubt"), whyTitle: $("#why-title"),
  whyText: $("#why-text"), legendBlue: $("#legend-blue"), legendRed: $("#legend-red"),
  heatmap: $("#heatmap"), bars: buildBars($("#bars"), pick),
};

let chosenFile = null;   // a chosen image is sent as it is; a drawing as a PNG of the pad
let pending = null;      // the timer of a read after a stroke
let inFlight = null;     // the AbortController of the request whose answer the page waits for
let lastTry = null;      // what "Try again" repeats
let answered = null;     // the digit of the answer on show

const pad = new Pad($("#pad"), {
  start() {
    chosenFile = null;
    cancelPending();
  },
  end() {
    setBusy(true);
    pending = setTimeout(() => {
      pending = null;
      read();
    }, READ_AFTER_MS);
  },
});

function cancelPending() {
  clearTimeout(pending);
  pending = null;
}

function setBusy(busy) {
  $("#answer").setAttribute("aria-busy", String(busy));
  $("#waiting").hidden = !busy;
}

function show(state, refusal) {
  $("#result").hidden = state !== "answer";
  $("#idle").hidden = state !== "idle";
  $("#message").hidden = state !== "refusal";
  $("#pad-hint").hidden = !pad.empty;
  if (refusal) {
    $("#message-text").replaceChildren(...withCode(refusal.message));
    $("#retry").hidden = !refusal.retry;
    $("#key-panel").hidden = refusal.kind !== "key";
  }
}

/** Text nodes, and <code> elements for the `commands` a sentence names. */
function withCode(sentence) {
  return sentence.split("`").map((part, i) => {
    if (i % 2 === 0) return document.createTextNode(part);
    const code = document.createElement("code");
    code.textContent = part;
    return code;
  });
}

/** A bar picked: why the answer and not that digit, or, for the answer's own bar, why it. The map
 * is brought into view when it is not (a short screen, or the page scrolled). */
async function pick(digit) {
  if (await read(digit === answered ? undefined : digit)) {
    elements.heatmap.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }
}

/** Read the pad or the chosen file; `versus` asks why the answer and not that digit. Resolves to
 * whether an answer is shown. */
async function read(versus) {
  cancelPending();
  inFlight?.abort();
  const request = new AbortController();
  inFlight = request;
  lastTry = () => read(versus);
  setBusy(true);
  try {
    const image = chosenFile ?? pad.toBlob();
    const answer = await explain(image, versus, request.signal);
    if (inFlight !== request) return false;
    answered = answer.digit;
    showAnswer(elements, answer);
    show("answer");
    $("#key-panel").hidden = true;
    return true;
  } catch (error) {
    if (error.name === "AbortError" || inFlight !== request) return false;
    if (!(error instanceof Refusal)) throw error;
    show("refusal", error);
    return false;
  } finally {
    if (inFlight === request) {
      inFlight = null;
      setBusy(pending !== null);   // a stroke ended meanwhile: its read is still to come
    }
  }
}

async function useFile(file) {
  if (!file) return;
  chosenFile = file;
  pad.showPicture(await createImageBitmap(file).catch(() => null), file.name);
  await read();
}

function reset() {
  cancelPending();
  inFlight?.abort();
  inFlight = null;
  setBusy(false);
  show("idle");
}

/** Ask the server whether it is up and takes the key, so a stale link is told at once; with a new
 * key, a digit already on the pad is read at once. */
async function checkKey({ readPad = false } = {}) {
  try {
    await ping();
    $("#key-panel").hidden = true;
    if (readPad && !pad.empty) await read();
    else if (!$("#message").hidden) show($("#result").hidden ? "idle" : "answer");
  } catch (error) {
    if (!(error instanceof Refusal)) throw error;
    show("refusal", error);
  }
}

$("#read").addEventListener("click", () => read());
$("#undo").addEventListener("click", () => {
  chosenFile = null;
  pad.undo();
  if (pad.empty) reset();
  else read();
});
$("#clear").addEventListener("click", () => {
  chosenFile = null;
  pad.clear();
  reset();
});
$("#retry").addEventListener("click", () => lastTry?.());
$("#choose").addEventListener("click", () => $("#file").click());
$("#photo").addEventListener("click", () => $("#camera").click());
for (const input of [$("#file"), $("#camera")]) {
  input.addEventListener("change", () => {
    useFile(input.files[0]);
    input.value = "";   // choosing the same file again reads it again
  });
}

const zone = $("#pad-zone");
zone.addEventListener("dragover", (event) => {
  event.preventDefault();
  zone.classList.add("dropping");
});
zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dropping");
  useFile(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (file) useFile(file);
});
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z" && !event.target.matches("input")) {
    event.preventDefault();
    $("#undo").click();
  }
});

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useKey($("#key-input").value);
  $("#key-input").value = "";
  checkKey({ readPad: true });
});
window.addEventListener("hashchange", () => adoptKeyFromLink() && checkKey({ readPad: true }));

$("#photo").hidden = !matchMedia("(pointer: coarse)").matches;   // phones and tablets: the camera
adoptKeyFromLink();
show("idle");
checkKey();
