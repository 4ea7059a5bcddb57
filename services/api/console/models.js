// Models: the versions with their held-out metrics, activation, and a retraining run followed.
import { call, say } from "./api.js";
import { drawCurves } from "./curves.js";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const METRICS = ["eer", "auc"];
// The record's metrics key of its held-out (FAR, FRR) points (pipeline/train/job.py CURVE_KEY).
const CURVE = "held_out_curve";
const COLUMNS = ["version", "active", "threshold", "energy", ...METRICS, "created", "", ""];

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function number(value) {
  return typeof value === "number" ? value.toFixed(4) : "";
}

export async function showModels() {
  try {
    const { models } = await call("/v1/models");
    const tables = Object.entries(models).map(([modality, versions]) => {
      const table = document.createElement("table");
      table.id = `models-${modality}`;
      table.createCaption().textContent = modality;
      const head = table.createTHead().insertRow();
      for (const name of COLUMNS) {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = name;
        head.append(th);
      }
      const body = table.createTBody();
      for (const model of versions) {
        const row = body.insertRow();
        row.dataset.version = model.version;
        row.append(
          cell(model.version),
          cell(model.active ? "active" : ""),
          cell(number(model.threshold)),
          cell(model.energy),
          ...METRICS.map((m) => cell(number(model.metrics[m]))),
          cell(new Date(model.created_at).toLocaleString()),
        );
        const action = document.createElement("td");
        if (!model.active) {
          const activate = document.createElement("button");
          activate.type = "button";
          activate.textContent = `Activate ${model.version}`;
          activate.addEventListener("click", () => activateVersion(model.version, activate));
          action.append(activate);
        }
        row.append(action);
        row.append(curvesToggle(body, row, model));
      }
      return table;
    });
    $("models-tables").replaceChildren(...tables);
  } catch (error) {
    say(error.message);
  }
}

// A button that opens (or closes) a row under the version's with its ROC and DET curves.
function curvesToggle(body, row, model) {
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = `Curves of ${model.version}`;
  button.setAttribute("aria-expanded", "false");
  const id = `curves-${model.version}`;
  button.setAttribute("aria-controls", id);
  button.addEventListener("click", () => {
    const open = document.getElementById(id);
    if (open) {
      open.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const shown = body.insertRow(row.sectionRowIndex + 1);
    shown.id = id;
    shown.className = "curves";
    const cellAll = shown.insertCell();
    cellAll.colSpan = COLUMNS.length;
    const curve = model.metrics[CURVE];
    if (curve?.far?.length) {
      const pair = document.createElement("div");
      pair.className = "curve-pair";
      pair.append(...drawCurves(curve, model.metrics.eer));
      cellAll.append(pair);
    } else {
      cellAll.textContent = `${model.version} has no recorded curve (registered before curves were kept).`;
    }
    button.setAttribute("aria-expanded", "true");
  });
  td.append(button);
  return td;
}

async function activateVersion(version, button) {
  button.disabled = true;
  say(`activating ${version}: re-embedding the retained items…`);
  try {
    await call(`/v1/models/${encodeURIComponent(version)}/activate`, { method: "POST" });
    say(`${version} is serving`);
  } catch (error) {
    say(error.message);
  }
  await showModels();
}

function follow(runId) {
  const phases = $("retrain-phases");
  phases.replaceChildren();
  $("retrain-outcome").textContent = "";
  $("retrain-run").hidden = false;
  const seen = [];
  const poll = async () => {
    let run;
    try {
      run = await call(`/v1/retrain/${encodeURIComponent(runId)}`);
    } catch (error) {
      say(error.message);
      return;
    }
    $("retrain-state").textContent = `run ${run.run_id}: ${run.status}, ${run.phase}`;
    $("retrain-progress").value = run.progress;
    if (seen.at(-1) !== run.phase) {
      seen.push(run.phase);
      const li = document.createElement("li");
      li.textContent = run.phase;
      phases.append(li);
    }
    if (run.status === "succeeded" || run.status === "failed") {
      const decision = run.metrics?.decision;
      $("retrain-outcome").textContent = run.error
        ? `failed: ${run.error}`
        : `${run.candidate_version ?? "no candidate"}: ` +
          `${run.promoted ? "promoted" : "not promoted"}` +
          (decision ? ` (${typeof decision === "string" ? decision : JSON.stringify(decision)})` : "");
      $("retrain-form").querySelector("button").disabled = false;
      await showModels();
      return;
    }
    setTimeout(poll, POLL_MS);
  };
  poll();
}

async function startRetraining(event) {
  event.preventDefault();
  const body = { modality: $("retrain-modality").value };
  const preset = $("retrain-preset").value;
  if (preset) body.preset = preset;
  try {
    const { run_id } = await call("/v1/retrain", { method: "POST", json: body });
    $("retrain-form").querySelector("button").disabled = true;
    follow(run_id);
  } catch (error) {
    say(error.message);
  }
}

export function initModels() {
  $("retrain-form").addEventListener("submit", startRetraining);
}
