// The answer on the page: the digit, its confidence, the ten probabilities as bars that ask
// "why this digit and not that one?", and the explanation drawn as a heat map over the input the
// model saw, with a caption that names the digits and what each colour means.

const DOUBT_BELOW = 0.9;          // below this confidence the runner-up is named too
const FOR = [205, 25, 30];        // red: the pixel speaks for the target digit
const AGAINST = [30, 85, 225];    // blue: the pixel speaks against it (for the contrasted digit)
const INK_SHADE = 0.45;           // how dark full ink is drawn under the colours (0 paper .. 1 black)

function percent(p) {
  if (p >= 0.9995) return "> 99.9%";
  if (p < 0.0005) return "< 0.1%";
  return `${(p * 100).toFixed(1)}%`;
}

/** The ten bars, built once: each is a button that asks for the map of its digit. */
export function buildBars(list, onPick) {
  return Array.from({ length: 10 }, (_, digit) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "bar";
    button.dataset.digit = String(digit);
    button.setAttribute("aria-pressed", "false");
    button.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span>' +
      '<span class="value"></span>';
    button.querySelector(".label").textContent = String(digit);
    button.addEventListener("click", () => onPick(digit));
    item.append(button);
    list.append(item);
    return button;
  });
}

/** Fill the result panel with one answer of /explanations. */
export function showAnswer(elements, answer) {
  const { digit, confidence, probabilities, target, versus } = answer;
  const picked = versus ?? target;   // the bar whose question the map answers
  elements.digit.textContent = String(digit);
  elements.confidence.textContent = `${percent(confidence)} sure`;
  const runnerUp = probabilities.map((p, d) => [p, d]).filter(([, d]) => d !== digit).sort((a, b) => b[0] - a[0])[0];
  elements.doubt.hidden = confidence >= DOUBT_BELOW;
  elements.doubt.textContent = `Not sure: it could also be a ${runnerUp[1]} (${percent(runnerUp[0])}).`;
  elements.bars.forEach((bar, d) => {
    bar.querySelector(".fill").style.setProperty("--p", String(probabilities[d]));
    bar.querySelector(".value").textContent = percent(probabilities[d]);
    bar.setAttribute("aria-pressed", String(d === picked));
    bar.classList.toggle("best", d === digit);
    bar.setAttribute("aria-label", `${d}: ${percent(probabilities[d])}${d === picked ? ", explained in the map" : ""}`);
  });
  const words = caption(target, versus, digit, probabilities);
  elements.whyTitle.textContent = words.title;
  elements.legendBlue.textContent = words.blue;
  elements.legendRed.textContent = words.red;
  elements.whyText.textContent = words.text;
  elements.heatmap.setAttribute("aria-label", `Heat map: ${words.text}`);
  drawHeatmap(elements.heatmap, answer.normalized_digit, answer.attributions);
}

/** What the map shows, in words: a digit alone (from a blank page, so only ink is coloured), or
 * the target against `versus` (from an average handwritten `versus`, so empty paper is coloured too). */
function caption(target, versus, digit, probabilities) {
  if (versus === undefined) {
    return {
      title: target === digit ? `Why ${target}?` : `Why not ${target} (${percent(probabilities[target])})?`,
      red: `for ${target}`, blue: `against ${target}`,
      text: `Red ink speaks for ${target}, blue ink against it, compared with a blank page: empty paper ` +
        "stays white.",
    };
  }
  return {
    title: `Why ${target} and not ${versus} (${percent(probabilities[versus])})?`,
    red: `toward ${target}`, blue: `toward ${versus}`,
    text: `Red pushes toward ${target}, blue toward ${versus}, compared with an average handwritten ` +
      `${versus}. Red on empty paper: where ${article(versus)} ${versus} would have ink that this drawing lacks.`,
  };
}

function article(digit) {
  return digit === 8 ? "an" : "a";
}

/**
 * The attributions (N x N, in logits) over the digit the model saw: `digit` is the smaller,
 * centred normalized digit (0-255, ink high) that the model input pads to N x N. Colour
 * strength is the square root of each attribution over the largest one's magnitude: the map
 * shows where, not how much in absolute terms, and the root keeps a missing stroke's many
 * small attributions visible beside a few large ones.
 */
export function drawHeatmap(canvas, digit, attributions) {
  const size = attributions.length;
  const margin = (size - digit.length) / 2;
  canvas.width = size;
  canvas.height = size;
  const context = canvas.getContext("2d");
  const image = context.createImageData(size, size);
  const largest = Math.max(...attributions.flat().map(Math.abs)) || 1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const ink = digit[y - margin]?.[x - margin] ?? 0;
      const paper = 255 * (1 - INK_SHADE * ink / 255);
      const value = attributions[y][x];
      const strength = Math.sqrt(Math.min(1, Math.abs(value) / largest));
      const colour = value >= 0 ? FOR : AGAINST;
      const at = 4 * (y * size + x);
      for (let channel = 0; channel < 3; channel++) {
        image.data[at + channel] = Math.round(paper * (1 - strength) + colour[channel] * strength);
      }
      image.data[at + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
}
