// Audit: the audit log with filters (component, actor, operation, time range), following live;
// a button checks the log's hash chain.

import {explain, follow, getJSON, request} from "./api.js";
import {field, fill, h} from "./dom.js";
import {auditEntry} from "./record.js";

const OPERATIONS = ["", "create", "update", "delete", "soft_delete", "restore", "import"];
const filters = {component: "", actor: "", operation: "", since: "", until: "", offset: 0, live: true};
const LIMIT = 50;

const iso = (local) => (local ? new Date(local).toISOString() : null);

export async function renderAudit(main, info, signal) {
  const list = h("ol", {class: "events", "aria-label": "Audit rows, newest first"});
  const pager = h("div", {class: "pager"});
  const live = h("span", {class: "live", role: "status"});
  let stream = null;

  function query() {
    return {component: filters.component, actor: filters.actor, operation: filters.operation,
      since: iso(filters.since), until: iso(filters.until)};
  }

  async function load() {
    try {
      const response = await request("GET", "/db/audit", {query: {...query(), limit: LIMIT, offset: filters.offset}, kind: "db:read"});
      const rows = await response.json();
      const total = Number(response.headers.get("X-Total-Count") ?? rows.length);
      fill(list, rows.map(auditEntry));
      fill(pager,
        h("span", {}, `${total ? filters.offset + 1 : 0}–${filters.offset + rows.length} of ${total}`),
        h("button", {disabled: filters.offset === 0, onclick: () => { filters.offset = Math.max(0, filters.offset - LIMIT); load(); }}, "Newer"),
        h("button", {disabled: filters.offset + rows.length >= total, onclick: () => { filters.offset += LIMIT; load(); }}, "Older"));
    } catch (error) {
      fill(list, h("li", {class: "message error"}, explain(error)));
    }
  }

  function matches(row) {
    return (!filters.component || row.component === filters.component)
      && (!filters.actor || row.actor === filters.actor)
      && (!filters.operation || row.operation === filters.operation)
      && !filters.until && filters.offset === 0;
  }

  function restartStream() {
    stream?.abort();
    stream = null;
    live.textContent = "";
    if (!filters.live || !info.db.changes) return;
    stream = new AbortController();
    signal.addEventListener("abort", () => stream?.abort());
    follow("/db/changes", {signal: stream.signal, kind: "db:read",
      onOpen: () => { live.textContent = "Following live"; live.className = "live on"; },
      onError: (error) => { live.textContent = `Not live: ${explain(error)}`; live.className = "live off"; },
      onEvent: (event) => {
        if (event.type === "reset") return void load();
        const row = {...JSON.parse(event.data), id: event.id};
        if (matches(row)) list.prepend(auditEntry(row));
      }});
  }

  const form = h("form", {class: "filter", "aria-label": "Filter the audit log", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    for (const name of ["component", "actor", "operation", "since", "until"]) filters[name] = String(data.get(name) ?? "").trim();
    filters.offset = 0;
    load();
  }},
    field("Component", h("input", {name: "component", list: "components", value: filters.component}),
      h("datalist", {id: "components"}, [...info.components.map((item) => item.name), "program_instances", "program_runs", "database"]
        .map((name) => h("option", {value: name})))),
    field("Actor", h("input", {name: "actor", value: filters.actor})),
    field("Operation", h("select", {name: "operation", value: filters.operation}, OPERATIONS.map((name) => h("option", {value: name}, name || "any")))),
    field("From", h("input", {name: "since", type: "datetime-local", value: filters.since})),
    field("Until", h("input", {name: "until", type: "datetime-local", value: filters.until})),
    h("button", {type: "submit", class: "primary"}, "Show"));

  fill(main, h("h1", {}, "Audit log"), info.db.auditVerify ? verifySection() : null, form,
    info.db.changes ? field("Follow live", h("input", {type: "checkbox", checked: filters.live,
      onchange: (event) => { filters.live = event.target.checked; restartStream(); }})) : null,
    live, list, pager);
  await load();
  restartStream();
}

/** "Verify chain": the outcome of GET /db/audit/verify, with the head hash to keep elsewhere. */
function verifySection() {
  const result = h("div", {class: "report", role: "status", "aria-live": "polite"});
  const button = h("button", {type: "button", onclick: async () => {
    button.disabled = true;
    fill(result, h("p", {class: "message"}, "Verifying…"));
    try {
      const report = await getJSON("/db/audit/verify", null, "db:read");
      const older = report.unchained ? ` (${report.unchained} older rows without hash)` : "";
      fill(result, report.ok
        ? h("p", {class: "message ok"}, `Chain intact: ${report.checked} rows${older}.`,
          report.head ? h("br") : null, report.head ? h("code", {}, `head ${report.head}`) : null)
        : h("p", {class: "message error"}, `Chain broken at row ${report.broken_at}: ${report.detail}.`));
    } catch (error) {
      fill(result, h("p", {class: "message error"}, explain(error)));
    } finally {
      button.disabled = false;
    }
  }}, "Verify chain");
  return h("section", {class: "verify", "aria-label": "Audit chain"}, button, result);
}
