// Compare: two files or ids, their distance on a bar that marks the model's threshold.
import { call, payloadUrl, refFrom, say } from "./api.js";
import { acceptDrops, fileModality, fileUrl, mediaElement } from "./media.js";

const $ = (id) => document.getElementById(id);

async function preview(side, modality, ref) {
  const frame = $(`compare-${side}-preview`);
  const file = $(`compare-${side}-file`).files[0];
  const src = file ? await fileUrl(file) : await payloadUrl(modality, ref.id, 320);
  frame.replaceChildren(mediaElement(modality, src, `item ${side.toUpperCase()}`));
}

function showBar(distance, limit, same) {
  // The bar spans twice the threshold, or more when the distance is beyond that.
  const span = Math.max(2 * limit, distance * 1.1) || 1;
  const bar = $("compare-bar");
  const fill = bar.querySelector(".fill");
  fill.style.width = `${(100 * distance) / span}%`;
  fill.style.background = same ? "var(--same)" : "var(--different)";
  bar.querySelector(".threshold").style.left = `${(100 * limit) / span}%`;
  bar.setAttribute(
    "aria-label",
    `distance ${distance.toFixed(4)} against threshold ${limit.toFixed(4)}`,
  );
}

async function compare(event) {
  event.preventDefault();
  const modality = $("compare-modality").value;
  const a = await refFrom($("compare-a-file"), $("compare-a-id"));
  const b = await refFrom($("compare-b-file"), $("compare-b-id"));
  if (!a || !b) {
    say("give both A and B: a file or an item id each");
    return;
  }
  say("");
  try {
    await Promise.all([preview("a", modality, a), preview("b", modality, b)]);
    const answer = await call("/v1/similarity", { method: "POST", json: { modality, a, b } });
    const verdict = $("compare-verdict");
    verdict.className = answer.same ? "same" : "different";
    verdict.textContent =
      `${answer.same ? "same" : "different"}: distance ${answer.distance.toFixed(4)}, ` +
      `threshold ${answer.threshold.toFixed(4)} (${answer.model_version})`;
    showBar(answer.distance, answer.threshold, answer.same);
    $("compare-result").hidden = false;
  } catch (error) {
    say(error.message);
  }
}

export function initCompare() {
  for (const side of ["a", "b"]) {
    const input = $(`compare-${side}-file`);
    acceptDrops(document.querySelector(`[data-drop="compare-${side}-file"]`), input, (file) => {
      $("compare-modality").value = fileModality(file);
      $(`compare-${side}-id`).value = "";
    });
  }
  $("compare-form").addEventListener("submit", compare);
}
