// Every call the console makes: relative to the page, so the console works under a Serve
// route prefix too, and with the API key the service asked for, kept for this tab only.
const KEY = "twinstream-api-key";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function say(text) {
  document.getElementById("status").textContent = text;
}

function url(path) {
  return new URL(`..${path}`, document.baseURI).toString();
}

export function itemPath(modality, id) {
  return `${modality}/${id.split("/").map(encodeURIComponent).join("/")}`;
}

export async function call(path, { method = "GET", json, raw = false } = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["x-api-key"] = key;
  const init = { method, headers };
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(url(path), init);
  if (response.status === 401) {
    // Asked once: the form stays until a key that works is given.
    const form = document.getElementById("key-form");
    form.hidden = false;
    document.getElementById("api-key").focus();
  }
  if (!response.ok && !(raw && response.status === 503)) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // not a problem+json body
    }
    throw new ApiError(response.status, `${response.status}: ${detail}`);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// An object URL for an indexed item's bytes: <img src> cannot send the key header.
export async function payloadUrl(modality, id, maxSide) {
  const query = maxSide && modality === "face" ? `?max_side=${maxSide}` : "";
  const response = await call(`/v1/payloads/${itemPath(modality, id)}${query}`, { raw: true });
  return URL.createObjectURL(await response.blob());
}

export async function fileAsRef(file) {
  const buffer = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < buffer.length; i += 0x8000) {
    binary += String.fromCharCode(...buffer.subarray(i, i + 0x8000));
  }
  return { data: btoa(binary) };
}

// A file given wins over an id typed: the ref for a search or comparison, or null.
export async function refFrom(fileInput, idInput) {
  const file = fileInput.files[0];
  if (file) return fileAsRef(file);
  const id = idInput.value.trim();
  return id ? { id } : null;
}

// The threshold of the model version that answered.
export async function threshold(version) {
  const { models } = await call("/v1/models");
  for (const list of Object.values(models)) {
    const found = list.find((m) => m.version === version);
    if (found) return found.threshold;
  }
  return null;
}
