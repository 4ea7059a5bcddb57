// Stream health: /readyz and /metrics (neither needs a key), refreshed while the tab shows.
import { call, say } from "./api.js";
import { named, parseMetrics, total } from "./prometheus.js";

const REFRESH_MS = 5000;
const DEAD_LETTERS = 20;
const $ = (id) => document.getElementById(id);
let timer = null;
let previous = null;
// The dead-letter count the list was last read at: the timer reads the list from Kafka only
// when it moves; opening the tab or pressing Refresh always reads it.
let deadLettersListed = null;

function rows(table, entries) {
  table.tBodies[0].replaceChildren(
    ...entries.map((values) => {
      const row = document.createElement("tr");
      for (const value of values) {
        const td = document.createElement("td");
        td.textContent = value;
        row.append(td);
      }
      return row;
    }),
  );
}

export async function showHealth({ timed = false } = {}) {
  try {
    const [readyResponse, metricsResponse] = await Promise.all([
      call("/readyz", { raw: true }),
      call("/metrics", { raw: true }),
    ]);
    const ready = await readyResponse.json();
    const samples = parseMetrics(await metricsResponse.text());
    $("health-ready").textContent = ready.ready ? "ready" : "not ready";
    $("health-ready").className = ready.ready ? "same" : "different";
    rows($("health-checks"), Object.entries(ready.checks).map(([n, ok]) => [n, ok ? "ok" : "FAILING"]));
    const by = (name) =>
      Object.fromEntries(named(samples, name).map((s) => [s.labels.modality, s.value]));
    const holders = by("twinstream_index_holder_up");
    const ages = by("twinstream_checkpoint_age_seconds");
    rows(
      $("health-modalities"),
      Object.keys(ready.model_versions).map((m) => [
        m,
        ready.model_versions[m],
        ready.index_sizes[m] ?? "",
        holders[m] === 1 ? "up" : holders[m] === 0 ? "DOWN" : "",
        ages[m] === undefined ? "" : ages[m].toFixed(1),
      ]),
    );
    rows(
      $("health-lag"),
      named(samples, "twinstream_consumer_lag")
        .sort((a, b) => a.labels.topic.localeCompare(b.labels.topic) || a.labels.partition - b.labels.partition)
        .map((s) => [s.labels.topic, s.labels.partition, s.value]),
    );
    const now = { at: performance.now(), items: total(samples, "twinstream_ingest_items_total") };
    const rate = previous ? ((now.items - previous.items) * 1000) / (now.at - previous.at) : null;
    previous = now;
    const deadLetters = total(samples, "twinstream_dead_letters_total");
    rows($("health-ingest"), [
      ["items ingested", now.items],
      ["items/s", rate === null ? "(next refresh)" : rate.toFixed(1)],
      ["tombstones applied", total(samples, "twinstream_ingest_deletes_total")],
      ["dead letters", deadLetters],
      ["retries", total(samples, "twinstream_ingest_retries_total")],
    ]);
    if (!timed || deadLetters !== deadLettersListed) {
      await showDeadLetters();
      deadLettersListed = deadLetters;
    }
    const stopped = ready.stopped_partitions ?? [];
    $("health-stopped").textContent = stopped
      .map((p) => `${p.topic}[${p.partition}] stopped at ${p.offset}: ${p.error}`)
      .join("\n");
  } catch (error) {
    say(error.message);
  }
}

// The newest dead letters with their reasons: read from the DLQ by the API (needs the key).
async function showDeadLetters() {
  const { dead_letters: letters } = await call(`/v1/dead-letters?limit=${DEAD_LETTERS}`);
  rows(
    $("health-dead-letters"),
    letters.map((d) => [
      new Date(d.dead_lettered_at).toLocaleString(),
      d.key ?? "",
      d.modality ?? "",
      d.reason ?? "",
      d.source?.topic ?? "",
      d.source?.partition ?? "",
      d.source?.offset ?? "",
    ]),
  );
  $("health-dead-letters-none").hidden = letters.length > 0;
}

export function watchHealth(visible) {
  clearInterval(timer);
  timer = visible ? setInterval(() => showHealth({ timed: true }), REFRESH_MS) : null;
  if (visible) showHealth();
}

export function initHealth() {
  $("health-refresh").addEventListener("click", () => showHealth());
}
