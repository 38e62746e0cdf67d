// tokentrail dashboard: refreshes the panels while calls arrive, loads the slower panels (advice,
// what-if) after the first paint, and keeps the filters in the URL. Talks to this server only.
"use strict";
(function () {
  const main = document.getElementById("main");
  const form = document.getElementById("filters");
  if (!main || !form) return;
  const query = main.dataset.query || "";
  const refreshMs = Number(main.dataset.refreshMs || 5000);
  let advice = null;
  let details = null;

  // Empty fields stay out of the URL: the default view is the shortest address.
  form.addEventListener("submit", () => {
    for (const field of form.elements) {
      if ((field.tagName === "INPUT" && !field.value) || (field.name === "stack" && field.value === "model")) {
        field.disabled = true;
      }
    }
  });
  const stack = form.elements.namedItem("stack");
  if (stack) stack.addEventListener("change", () => form.requestSubmit());

  async function fragment(path) {
    const response = await fetch(path + (query ? "?" + query : ""), { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.text();
  }

  function showAdvice() {
    const slot = document.getElementById("advice");
    if (slot && advice !== null) slot.innerHTML = advice;
  }

  async function loadAdvice() {
    try {
      advice = await fragment("/dashboard/advice");
    } catch (error) {
      advice = '<p class="error">advice unavailable: ' + String(error.message).replace(/</g, "&lt;") + "</p>";
    }
    showAdvice();
  }

  // The per-call figures come as one fragment with a part for each of their places on the page.
  function showDetails() {
    if (details === null) return;
    for (const part of details.content.querySelectorAll("[data-slot]")) {
      const slot = document.getElementById(part.dataset.slot);
      if (slot) slot.innerHTML = part.innerHTML;
    }
  }

  async function loadDetails() {
    try {
      const template = document.createElement("template");
      template.innerHTML = await fragment("/dashboard/details");
      details = template;
      showDetails();
    } catch (error) {
      // Keep the last figures; the next tick tries again.
    }
  }

  async function loadWhatif() {
    const slot = document.getElementById("whatif-result");
    if (!slot || !new URLSearchParams(query).get("whatif")) return;
    try {
      slot.innerHTML = await fragment("/dashboard/whatif");
    } catch (error) {
      slot.textContent = "what-if unavailable: " + error.message;
    }
  }

  async function refresh() {
    if (document.hidden || main.contains(document.activeElement) && document.activeElement !== main) return;
    try {
      const html = await fragment("/dashboard/main");
      const whatif = document.getElementById("whatif-result");
      const kept = whatif ? whatif.innerHTML : null;
      main.innerHTML = html;
      showDetails();
      showAdvice();
      const slot = document.getElementById("whatif-result");
      if (slot && kept !== null) slot.innerHTML = kept;
      main.dataset.refreshed = String(Date.now());
    } catch (error) {
      // The server went away or the ledger is busy: try again at the next tick.
    }
  }

  // Each loop waits for its answer before it schedules the next: a slow server (a large ledger, a
  // busy machine) gets one request of each kind at a time, never a queue of them.
  function every(ms, task) {
    const loop = async () => {
      await task();
      setTimeout(loop, ms);
    };
    setTimeout(loop, ms);
  }

  loadDetails();
  loadAdvice();
  loadWhatif();
  every(refreshMs, refresh);
  every(Math.max(refreshMs, 15000), loadDetails);
  every(60000, loadAdvice);
})();
