// Wharf web client: uploads with a progress bar per file, new folder, rename, delete,
// sorting and logout, all through the REST API with the session's CSRF token.
"use strict";
(() => {
  const browser = document.getElementById("browser");
  if (!browser) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const folder = browser.dataset.folder;
  const messages = document.getElementById("messages");
  const uploads = document.getElementById("uploads");
  const picker = document.getElementById("picker");
  const drop = document.getElementById("drop");
  const encode = (path) => path.split("/").map(encodeURIComponent).join("/");
  const inFolder = (name) => (folder === "/" ? "" : folder) + "/" + name;

  function say(text, kind) {
    const p = document.createElement("p");
    p.className = kind || "info";
    p.textContent = text;
    messages.replaceChildren(p);
  }

  async function reason(response) {
    try {
      return (await response.json()).error || response.statusText;
    } catch {
      return response.statusText;
    }
  }

  async function call(method, url, body) {
    const headers = { "X-CSRF-Token": csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(await reason(response));
    return response;
  }

  // Re-reads the listing without reloading, so upload progress stays on screen.
  async function refresh() {
    const response = await fetch(location.href, { credentials: "same-origin" });
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("#entries tbody");
    if (fresh) document.querySelector("#entries tbody").replaceWith(fresh);
    applyOrder();
  }

  function upload(file) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "file";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = "0%";
    item.append(name, bar, state);
    uploads.append(item);
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", "/api/v1/files" + encode(inFolder(file.name)));
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          const percent = Math.round((100 * e.loaded) / e.total);
          bar.value = percent;
          state.textContent = percent + "%";
        }
      };
      xhr.onload = () => {
        if (xhr.status === 201) {
          bar.value = 100;
          state.textContent = "uploaded";
          item.className = "ok";
          resolve(true);
        } else {
          let why = xhr.statusText;
          try { why = JSON.parse(xhr.responseText).error || why; } catch { /* not JSON */ }
          bar.value = 0;
          state.textContent = "refused: " + why;
          item.className = "refused";
          resolve(false);
        }
      };
      xhr.onerror = () => {
        state.textContent = "failed: the connection was lost";
        item.className = "refused";
        resolve(false);
      };
      xhr.send(file);
    });
  }

  async function uploadAll(files) {
    const results = await Promise.all([...files].map(upload));
    await refresh();
    if (results.every(Boolean)) say(results.length + " file(s) uploaded.", "ok");
    else say("Some files were not uploaded; the reason is next to each.", "error");
  }

  picker.addEventListener("change", () => uploadAll(picker.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) uploadAll(e.dataTransfer.files);
  });

  document.getElementById("new-folder").addEventListener("click", async () => {
    const name = prompt("Name of the new folder");
    if (!name) return;
    try {
      await call("POST", "/api/v1/folders" + encode(inFolder(name)));
      await refresh();
      say("Folder " + name + " created.", "ok");
    } catch (e) { say("Cannot create " + name + ": " + e.message, "error"); }
  });

  document.getElementById("entries").addEventListener("click", async (e) => {
    const button = e.target.closest("button");
    if (!button) return;
    if (button.dataset.sort) return sortBy(button.dataset.sort);
    const row = button.closest("tr");
    const path = row.dataset.path;
    if (button.classList.contains("delete")) {
      if (!confirm("Delete " + row.dataset.name + "?")) return;
      try {
        await call("DELETE", "/api/v1/files" + encode(path));
        row.remove();
        say(row.dataset.name + " deleted.", "ok");
      } catch (err) { say("Cannot delete " + row.dataset.name + ": " + err.message, "error"); }
    } else if (button.classList.contains("rename")) {
      const name = prompt("New name", row.dataset.name);
      if (!name || name === row.dataset.name) return;
      try {
        await call("POST", "/api/v1/rename", { from: path, to: inFolder(name) });
        await refresh();
        say("Renamed to " + name + ".", "ok");
      } catch (err) { say("Cannot rename: " + err.message, "error"); }
    }
  });

  // The server lists folders first, by name; a chosen order survives refreshes.
  let order = null;
  function sortBy(key) {
    order = { key, up: order && order.key === key ? !order.up : true };
    applyOrder();
  }
  function applyOrder() {
    if (!order) return;
    const { key, up } = order;
    const body = document.querySelector("#entries tbody");
    const rows = [...body.querySelectorAll("tr[data-name]")];
    const folderFirst = (r) => (r.dataset.kind === "folder" ? 0 : 1);
    rows.sort((a, b) => {
      const x = a.dataset[key], y = b.dataset[key];
      const c = key === "name" ? x.localeCompare(y) : Number(x) - Number(y);
      return folderFirst(a) - folderFirst(b) || (up ? c : -c);
    });
    body.append(...rows);
  }

  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    location.href = "/login";
  });
})();
