// Items: a page of stored items, one opened with its bytes and metadata, deleted on request.
import { call, itemPath, payloadUrl, say } from "./api.js";
import { mediaElement } from "./media.js";

const PAGE = 25;
const $ = (id) => document.getElementById(id);
const state = { modality: "face", label: "", offset: 0, total: 0, open: null, asked: 0 };

async function list() {
  const query = new URLSearchParams({ modality: state.modality, offset: state.offset, limit: PAGE });
  if (state.label) query.set("label", state.label);
  // Only the newest listing is shown: an older answer arriving late must not overwrite it.
  const asked = ++state.asked;
  try {
    const page = await call(`/v1/items?${query}`);
    if (asked !== state.asked) return;
    state.total = page.total;
    const last = Math.min(page.offset + page.items.length, page.total);
    $("items-summary").textContent = page.total
      ? `${page.offset + 1}–${last} of ${page.total}`
      : "no items";
    const rows = page.items.map((item) => {
      const row = document.createElement("tr");
      const idCell = document.createElement("td");
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = item.id;
      open.addEventListener("click", () => show(item.modality, item.id));
      idCell.append(open);
      const label = document.createElement("td");
      label.textContent = item.label ?? "";
      const when = document.createElement("td");
      when.textContent = new Date(item.indexed_at).toLocaleString();
      row.append(idCell, label, when);
      return row;
    });
    $("items-table").tBodies[0].replaceChildren(...rows);
    $("items-prev").disabled = state.offset === 0;
    $("items-next").disabled = state.offset + PAGE >= state.total;
  } catch (error) {
    say(error.message);
  }
}

async function show(modality, id) {
  const detail = $("item-detail");
  try {
    const item = await call(`/v1/items/${itemPath(modality, id)}`);
    state.open = { modality, id };
    detail.querySelector("h3").textContent = id;
    const fields = {
      modality: item.modality,
      label: item.label ?? "(none)",
      "model version": item.model_version ?? "(not indexed)",
      indexed: new Date(item.indexed_at).toLocaleString(),
      topic: item.source.topic,
      partition: item.source.partition,
      offset: item.source.offset,
    };
    detail.querySelector("dl").replaceChildren(
      ...Object.entries(fields).flatMap(([name, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = value;
        return [dt, dd];
      }),
    );
    const src = await payloadUrl(modality, id, 320);
    detail.querySelector(".frame").replaceChildren(mediaElement(modality, src, id));
    detail.hidden = false;
  } catch (error) {
    say(error.message);
  }
}

function askDelete() {
  if (!state.open) return;
  $("delete-title").textContent = `Delete ${state.open.modality} item ${state.open.id}? ` +
    "It leaves the index at once and a tombstone is written to Kafka.";
  $("delete-dialog").showModal();
  $("delete-cancel").focus();
}

async function onDialogClose() {
  if ($("delete-dialog").returnValue !== "delete" || !state.open) return;
  const { modality, id } = state.open;
  try {
    await call(`/v1/items/${itemPath(modality, id)}`, { method: "DELETE" });
    state.open = null;
    $("item-detail").hidden = true;
    // The list first: once the status says so, the item is gone from the page too.
    await list();
    say(`deleted ${id}`);
  } catch (error) {
    say(error.message);
  }
}

export function initItems() {
  $("items-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.modality = $("items-modality").value;
    state.label = $("items-label").value.trim();
    state.offset = 0;
    list();
  });
  $("items-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE);
    list();
  });
  $("items-next").addEventListener("click", () => {
    state.offset += PAGE;
    list();
  });
  $("item-delete").addEventListener("click", askDelete);
  $("delete-dialog").addEventListener("close", onDialogClose);
}

export const showItems = list;
