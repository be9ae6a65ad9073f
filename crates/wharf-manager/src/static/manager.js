// The Manager's only script: asks before a destructive form is sent, and selects a
// secret shown once (a new token, a one-time-code secret) for copying.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("DOMContentLoaded", () => {
  for (const secret of document.querySelectorAll(".secret")) {
    secret.addEventListener("click", () => {
      const range = document.createRange();
      range.selectNodeContents(secret);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    });
  }
});

// The events page's live tail: records arrive as server-sent events and go on top.
document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  const table = document.getElementById("events");
  if (!live || !table || !window.EventSource) {
    return;
  }
  const source = new EventSource(live.dataset.src);
  source.addEventListener("record", (message) => {
    const record = JSON.parse(message.data);
    const row = document.createElement("tr");
    row.className = "live";
    const cells = [
      String(record.seq), record.time, `${record.id} ${record.name}`, record.outcome,
      record.account || "", record.path || record.remote || "", record.message || "",
    ];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (i === 0) cell.className = "num";
      if (i === 3) cell.className = record.outcome === "success" ? "ok" : "bad";
      if (i >= 5) cell.classList.add("wide");
      row.appendChild(cell);
    });
    const header = table.querySelector("tr");
    header.after(row);
  });
});
