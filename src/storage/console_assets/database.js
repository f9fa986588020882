// Database: health, the schema diagram, backup and restore (dry run first), export and import.

import {allowed, explain, getJSON, request} from "./api.js";
import {download, field, fill, filename, h, notify} from "./dom.js";

export async function renderDatabase(main, info, signal) {
  const db = info.db;
  const sections = [h("h1", {}, "Database")];
  const health = h("p", {id: "health"}, "Checking…");
  const schema = h("p", {id: "schema-check"}, "Checking…");
  if (db.health) sections.push(h("section", {"aria-labelledby": "h-health"}, h("h2", {id: "h-health"}, "Health"), health,
    db.ready ? h("p", {}, "Schema: ", schema) : null));
  const stats = h("div");
  if (info.programs?.stats) sections.push(stats);
  if (db.backup || db.restore) sections.push(backupSection(db));
  if (db.exportZip || db.import) sections.push(exportSection(db));
  const diagram = h("div", {class: "diagram"});
  if (db.diagram) sections.push(h("section", {"aria-labelledby": "h-diagram"}, h("h2", {id: "h-diagram"}, "Schema"), diagram));
  fill(main, sections);

  if (db.health) {
    getJSON("/db/health", null, "db:read")
      .then((answer) => fill(health, h("span", {class: "badge completed"}, answer.status), ` ${answer.backend ?? ""}`))
      .catch((error) => fill(health, h("span", {class: "badge failed"}, "unreachable"), ` ${explain(error)}`));
  }
  if (db.ready) {
    // Readiness adds the schema check: a 503 names the tables that differ from the models.
    getJSON("/db/ready", null, "db:read")
      .then(() => fill(schema, h("span", {class: "badge completed"}, "matches the models")))
      .catch((error) => fill(schema, h("span", {class: "badge failed"}, "differs"), ` ${explain(error)}`));
  }
  if (info.programs?.stats) {
    getJSON(`${info.programs.prefix}/database/stats`, null, "programs:read")
      .then((answer) => fill(stats, h("h2", {}, "Programs"), h("dl", {class: "summary"},
        Object.entries(answer).filter(([, value]) => typeof value !== "object")
          .map(([name, value]) => [h("dt", {}, name.replaceAll("_", " ")), h("dd", {}, String(value))]))))
      .catch(() => stats.replaceChildren());
  }
  if (db.diagram) {
    request("GET", "/db/diagram.svg", {kind: "db:read"})
      .then((response) => response.blob())
      .then((blob) => {
        if (!signal.aborted) fill(diagram, h("img", {src: URL.createObjectURL(blob), alt: "Tables, their columns and foreign keys"}));
      })
      .catch((error) => fill(diagram, h("p", {class: "message"}, explain(error))));
  }
}

async function fetchDownload(path, fallback) {
  try {
    const response = await request("GET", path, {kind: "db:admin"});
    download(await response.blob(), filename(response, fallback));
    notify(`Downloaded ${filename(response, fallback)}.`);
  } catch (error) {
    notify(explain(error), "error");
  }
}

/** A file upload that must pass a dry run before the real one is offered. */
function uploadForm({label, path, submit, options = () => ({}), extra = [], describe}) {
  const file = h("input", {type: "file", name: "file", required: true});
  const report = h("div", {class: "report", role: "status", "aria-live": "polite"});
  const apply = h("button", {type: "button", class: "danger", disabled: true}, submit);
  let checked = null;

  async function send(dryRun) {
    const body = new FormData();
    body.append("file", file.files[0]);
    const response = await request("POST", path, {query: {...options(), dry_run: dryRun}, body, kind: "db:replace"});
    return response.json();
  }

  file.addEventListener("change", () => {
    checked = null;
    apply.disabled = true;
    report.replaceChildren();
  });
  apply.addEventListener("click", async () => {
    if (!checked || !confirm(`${submit}? This replaces data in the live database.`)) return;
    apply.disabled = true;
    try {
      fill(report, h("p", {class: "message"}, "Done: "), describe(await send(false)));
      notify(`${submit}: done.`);
    } catch (error) {
      fill(report, h("p", {class: "message error"}, explain(error)));
    }
  });
  return h("form", {class: "upload", "aria-label": label, onsubmit: async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    try {
      const answer = await send(true);
      checked = file.files[0];
      fill(report, h("p", {class: "message ok"}, "Dry run passed: nothing was changed yet."), describe(answer));
      apply.disabled = false;
    } catch (error) {
      fill(report, h("p", {class: "message error"}, `Dry run failed: ${explain(error)}`));
    }
  }}, field("File", file), extra, h("div", {class: "actions"}, h("button", {type: "submit"}, "Check (dry run)"), apply), report);
}

function tables(answer) {
  return h("table", {class: "records"}, h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Table"), h("th", {scope: "col"}, "Rows"))),
    h("tbody", {}, Object.entries(answer.tables ?? {}).map(([name, count]) => h("tr", {}, h("td", {}, name), h("td", {}, String(count))))));
}

function backupSection(db) {
  const admin = allowed("db:admin");
  const replace = allowed("db:replace");
  const integrity = h("input", {type: "checkbox", name: "integrity", checked: true});
  return h("section", {"aria-labelledby": "h-backup"}, h("h2", {id: "h-backup"}, "Backup and restore"),
    admin ? null : h("p", {class: "message error"}, "Your token may not back up or restore."),
    admin && !replace ? h("p", {class: "message"}, "Restoring is not offered: the server refuses it to you (it may only accept it from the machine itself).") : null,
    db.backup && admin ? h("button", {class: "primary", onclick: () => fetchDownload("/db/backup.sqlite", "backup.sqlite")}, "Download backup") : null,
    db.restore && replace ? uploadForm({label: "Restore a backup", path: "/db/restore", submit: "Restore",
      options: () => ({integrity_check: integrity.checked}),
      extra: [field("Full integrity check", integrity)],
      describe: (answer) => h("div", {}, h("p", {}, `${answer.bytes ?? "?"} bytes`), tables(answer))}) : null);
}

function exportSection(db) {
  const admin = allowed("db:admin");
  const mode = h("select", {name: "mode"}, ["insert", "upsert", "replace"].map((item) => h("option", {value: item}, item)));
  const table = h("input", {name: "table"});
  return h("section", {"aria-labelledby": "h-export"}, h("h2", {id: "h-export"}, "Export and import (CSV)"),
    db.exportZip && admin ? h("button", {onclick: () => fetchDownload("/db/export.zip", "export.zip")}, "Download export (zip)") : null,
    db.import && allowed("db:replace") ? uploadForm({label: "Import CSV", path: "/db/import", submit: "Import",
      options: () => ({mode: mode.value, table: table.value.trim() || null}),
      extra: [field("Mode", mode), field("Table (for one CSV file)", table)],
      describe: (answer) => h("div", {}, h("p", {}, `Mode ${answer.mode}; skipped: ${(answer.skipped ?? []).join(", ") || "none"}`), tables(answer))}) : null);
}
