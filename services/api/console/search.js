// Search: a file or an id in, the nearest items out, each shown as what it is.
import { call, payloadUrl, refFrom, say, threshold } from "./api.js";
import { acceptDrops, drawBox, fileModality, fileUrl, mediaElement } from "./media.js";

const THUMB_SIDE = 160;
const $ = (id) => document.getElementById(id);

async function showQuery(modality, ref, file) {
  const figure = $("search-query");
  const frame = figure.querySelector(".frame");
  frame.replaceChildren();
  figure.querySelector(".face-note").textContent = "";
  const src = file ? await fileUrl(file) : await payloadUrl(modality, ref.id);
  const element = mediaElement(modality, src, "the query");
  frame.append(element);
  figure.hidden = false;
  return element;
}

function matchItem(modality, match) {
  const li = document.createElement("li");
  li.className = "match";
  li.dataset.id = match.id;
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = match.label ?? "(no label)";
  const id = document.createElement("div");
  id.className = "id";
  id.textContent = match.id;
  const distance = document.createElement("div");
  distance.className = "distance";
  distance.textContent = `distance ${match.distance.toFixed(4)}`;
  const verdict = document.createElement("div");
  verdict.className = match.same ? "same" : "different";
  verdict.textContent = match.same ? "same" : "different";
  li.append(label, id, distance, verdict);
  payloadUrl(modality, match.id, THUMB_SIDE)
    .then((src) => li.prepend(mediaElement(modality, src, `${match.label ?? ""} ${match.id}`)))
    .catch((error) => say(error.message));
  return li;
}

async function search(event) {
  event.preventDefault();
  const modality = $("search-modality").value;
  const file = $("search-file").files[0];
  const ref = await refFrom($("search-file"), $("search-id"));
  if (!ref) {
    say("pick or drop a file, or type an item id");
    return;
  }
  say("");
  const results = $("search-results");
  results.replaceChildren();
  $("search-summary").textContent = "searching…";
  try {
    const preview = await showQuery(modality, ref, file);
    const body = { modality, item: ref, k: Number($("search-k").value) || 5 };
    const label = $("search-label").value.trim();
    if (label) body.label = label;
    const answer = await call("/v1/search", { method: "POST", json: body });
    if (answer.query_face) {
      const { box, faces_found } = answer.query_face;
      drawBox(preview.parentElement, preview, box);
      $("search-query").querySelector(".face-note").textContent =
        `face at ${box.left},${box.top} ${box.width}×${box.height} (${faces_found} found)`;
    }
    const limit = await threshold(answer.model_version);
    $("search-summary").textContent =
      `${answer.matches.length} matches by ${answer.model_version}` +
      (limit === null ? "" : `, threshold ${limit.toFixed(4)}`);
    results.append(...answer.matches.map((m) => matchItem(modality, m)));
  } catch (error) {
    $("search-summary").textContent = "";
    say(error.message);
  }
}

export function initSearch() {
  const input = $("search-file");
  acceptDrops(document.querySelector('[data-drop="search-file"]'), input, (file) => {
    $("search-modality").value = fileModality(file);
    $("search-id").value = "";
  });
  $("search-form").addEventListener("submit", search);
}
