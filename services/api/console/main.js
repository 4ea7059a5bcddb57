// The console's entry: tabs, the API key form, and each page's wiring.
import { say, setKey } from "./api.js";
import { initCompare } from "./compare.js";
import { initHealth, watchHealth } from "./health.js";
import { initItems, showItems } from "./items.js";
import { initModels, showModels } from "./models.js";
import { initSearch } from "./search.js";

const ON_OPEN = { items: showItems, models: showModels };

function select(tab) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const other of tabs) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", String(chosen));
    other.tabIndex = chosen ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
  }
  const page = tab.getAttribute("aria-controls");
  watchHealth(page === "health");
  ON_OPEN[page]?.();
}

function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, i) => {
    tab.tabIndex = i === 0 ? 0 : -1;
    tab.addEventListener("click", () => select(tab));
    // Arrow keys move between tabs, as in every tab list.
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      select(next);
    });
  });
}

function initKey() {
  const form = document.getElementById("key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(document.getElementById("api-key").value);
    form.hidden = true;
    say("key set: run that again");
  });
}

initTabs();
initKey();
initSearch();
initCompare();
initItems();
initModels();
initHealth();
