// The inference API on this page's own origin (nginx proxies it to TorchServe): the key, the
// requests, and what each refusal means to a person. No answer is ever shown as raw JSON.

const KEY_ITEM = "inference-key";   // sessionStorage: the key lives as long as this tab

/** A refused or failed request, told as the sentence a person needs. */
export class Refusal extends Error {
  constructor(kind, sentence, { retry = false } = {}) {
    super(sentence);
    this.kind = kind;     // "key", "image", "busy", "server"
    this.retry = retry;   // whether trying the same thing again can help
  }
}

/** Keep a key from the link's fragment (#key=...) for this tab, and take it out of the address bar. */
export function adoptKeyFromLink() {
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  if (key) {
    useKey(key);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return Boolean(key);
}

export function useKey(key) {
  sessionStorage.setItem(KEY_ITEM, key.trim());
}

/** The digit in an image, its probabilities and the map of why it is that digit: and not `versus`,
 * when given. */
export function explain(image, versus, signal) {
  const form = new FormData();
  form.append("data", image, image.name || "digit.png");
  if (versus !== undefined) form.append("versus", String(versus));
  return call("/explanations/mnist", { method: "POST", body: form, signal }, image.size);
}

/** Resolves when the server is up and accepts the key. */
export function ping(signal) {
  return call("/ping", { signal });
}

async function call(path, init, bodySize = 0) {
  const key = sessionStorage.getItem(KEY_ITEM);
  if (!key) throw new Refusal("key", NO_KEY);
  let response;
  try {
    response = await fetch(path, { ...init, headers: { Authorization: `Bearer ${key}` }, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Refusal("server", "The server cannot be reached. Check that `make demo` is still running, then try again.",
      { retry: true });
  }
  const body = await response.json().catch(() => null);   // TorchServe's own 413 has no body
  if (response.ok && body) return body;
  throw refusal(response.status, body, bodySize);
}

const NO_KEY = "This page needs the inference key. Open the link that `make demo` printed (it ends in #key=…), " +
  "or run `make demo-link` for a fresh one, or paste a key below.";
const BAD_KEY = "The server refused this page's key: it is wrong, or it has expired. Run `make demo-link` in the " +
  "repository and open the link it prints, or paste a fresh key below.";

function megabytes(bytes) {
  return `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 1)} MB`;
}

/** The sentence for each way the server and its proxy refuse a request. */
function refusal(status, body, bodySize) {
  const type = body?.type;
  if (status === 400 && type === "InvalidKeyException") return new Refusal("key", BAD_KEY);
  if (type === "not_an_image") {
    return new Refusal("image", "That file is not an image the server can read. Choose a picture of one digit " +
      "(PNG, JPEG, WebP, GIF, BMP or TIFF).");
  }
  if (type === "invalid_request") {
    return new Refusal("image", "The server could not find one image in the request. Choose the image again.");
  }
  if (status === 413) {
    const limit = body?.limit_bytes ? `; the server takes at most ${megabytes(body.limit_bytes)}` : "";
    const what = type === "image_too_large" ? "The image has too many pixels for the server"
      : `The image is too large (${megabytes(bodySize)}${limit})`;
    return new Refusal("image", `${what}. Choose a smaller image, or crop this one.`);
  }
  if (status === 422) {
    return new Refusal("image", "No digit found: the drawing is blank, or the picture has too little contrast. " +
      "Draw a digit, or choose a clearer picture of one.");
  }
  if (status === 429 && type === "too_many_explanations") {
    return new Refusal("busy", "The server is busy explaining other digits. Try again in a moment.", { retry: true });
  }
  if (status === 429) {
    return new Refusal("busy", "Too many requests from your address in a short time. Wait a few seconds, " +
      "then try again.", { retry: true });
  }
  if (status === 502 || status === 504) {
    return new Refusal("server", "The model server is not answering. Check that TorchServe is running " +
      "(`make demo` starts it), then try again.", { retry: true });
  }
  if (status === 503) {
    return new Refusal("busy", "The server is overloaded right now. Try again in a moment.", { retry: true });
  }
  return new Refusal("server", `The server failed on this request (HTTP ${status}). Try again; if it keeps ` +
    "failing, the server's logs (the logs/ folder) say why.", { retry: true });
}
