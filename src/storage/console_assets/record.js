// Data: one record (edit with If-Match, conflicts, delete, restore, history) and new records.

import {ApiError, allowed, explain, follow, getJSON, request} from "./api.js";
import {fill, h, notify, text, when} from "./dom.js";
import {schemaForm} from "./schemaform.js";

const path = (component, key) => `/${component.name}/${encodeURIComponent(key)}`;

export async function renderRecord(main, component, key, info, signal) {
  const write = `${component.name}:write`;
  let record;
  let etag;
  let form;
  const status = h("div", {role: "status", "aria-live": "polite"});
  const conflict = h("section", {class: "conflict", hidden: true, "aria-label": "Conflict"});
  const formSlot = h("div");
  const buttons = h("div", {class: "actions"});
  const history = h("div", {class: "history"});
  const live = h("span", {class: "live", role: "status"});

  async function load() {
    const response = await request("GET", path(component, key),
      {query: {include_deleted: component.softDelete || null}, kind: `${component.name}:read`});
    etag = response.headers.get("ETag");
    record = await response.json();
  }

  function editable() {
    const fields = Object.keys(component.update?.properties ?? {});
    return component.fields.filter((name) => !fields.includes(name));
  }

  function renderForm() {
    form = schemaForm(component.read, record, {readOnly: editable()});
    fill(formSlot, h("form", {class: "record", novalidate: true, "aria-label": "Record", onsubmit: (event) => {
      event.preventDefault();
      save(changes());
    }}, form.element,
      component.update && allowed(write) && !record.deleted_at ? h("button", {type: "submit", class: "primary"}, "Save") : null));
    fill(buttons,
      component.canDelete && allowed(write) && !record.deleted_at ? h("button", {class: "danger", onclick: remove}, "Delete") : null,
      component.softDelete && allowed(write) && record.deleted_at ? h("button", {class: "primary", onclick: restore}, "Restore") : null,
      record.deleted_at ? h("p", {class: "message"}, `Deleted ${when(record.deleted_at)}.`) : null);
  }

  function changes() {
    const values = form.read();
    return Object.fromEntries(Object.entries(values).filter(([name, value]) => text(value) !== text(record[name])));
  }

  async function save(values, ifMatch = etag) {
    form.clearErrors();
    if (!Object.keys(values).length) return notify("Nothing to save: no field was changed.");
    try {
      const response = await request("PATCH", path(component, key), {json: values, headers: {"If-Match": ifMatch}, kind: write});
      etag = response.headers.get("ETag");
      record = await response.json();
      conflict.hidden = true;
      renderForm();
      notify("Saved.");
    } catch (error) {
      if (error.status === 412) return showConflict(values);
      if (error.status === 422 && Array.isArray(error.detail)) {
        const rest = form.showErrors(error.detail);
        if (rest.length) notify(rest.join("; "), "error");
        return;
      }
      notify(explain(error), "error");
    }
  }

  async function showConflict(mine) {
    const response = await request("GET", path(component, key), {query: {include_deleted: component.softDelete || null}});
    const theirs = await response.json();
    const theirEtag = response.headers.get("ETag");
    const fields = component.fields.filter((name) => name in mine || text(theirs[name]) !== text(record[name]));
    fill(conflict,
      h("h2", {}, "Someone else changed this record"),
      h("p", {}, "It changed after you opened it. Compare and choose which version to keep."),
      h("div", {class: "table-wrap"}, h("table", {class: "diff"},
        h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Field"), h("th", {scope: "col"}, "Your version"), h("th", {scope: "col"}, "Their version (saved)"))),
        h("tbody", {}, fields.map((name) => h("tr", {},
          h("th", {scope: "row"}, name),
          h("td", {class: "mine"}, text(name in mine ? mine[name] : record[name])),
          h("td", {class: "theirs"}, text(theirs[name]))))))),
      h("div", {class: "actions"},
        h("button", {class: "primary", onclick: () => save(mine, theirEtag)}, "Keep my version"),
        h("button", {onclick: () => {
          record = theirs;
          etag = theirEtag;
          conflict.hidden = true;
          renderForm();
          notify("Showing their version.");
        }}, "Use their version")));
    conflict.hidden = false;
    conflict.querySelector("button").focus();
  }

  async function remove() {
    if (!confirm(`Delete ${component.name} ${key}?`)) return;
    try {
      await request("DELETE", path(component, key), {headers: {"If-Match": etag}, kind: write});
      notify("Deleted.");
      if (!component.softDelete) return void (location.hash = `#/data/${component.name}`);
      await refresh();
    } catch (error) {
      notify(error.status === 412 ? "It changed meanwhile: look again before deleting." : explain(error), "error");
      if (error.status === 412) await refresh();
    }
  }

  async function restore() {
    try {
      await request("POST", `${path(component, key)}/restore`, {headers: {"If-Match": etag}, kind: write});
      notify("Restored.");
      await refresh();
    } catch (error) {
      notify(explain(error), "error");
    }
  }

  async function loadHistory() {
    if (!info.db.audit || !allowed("db:read")) return;
    try {
      const rows = await getJSON("/db/audit", {component: component.name, record_id: key, limit: 50}, "db:read");
      fill(history, h("h2", {}, "History"), rows.length ? h("ol", {class: "events"}, rows.map(auditEntry)) : h("p", {}, "No history."));
    } catch (error) {
      fill(history, h("h2", {}, "History"), h("p", {class: "message error"}, explain(error)));
    }
  }

  async function refresh() {
    await load();
    renderForm();
    await loadHistory();
  }

  await load();
  fill(main,
    h("p", {}, h("a", {href: `#/data/${component.name}`}, `← All ${component.name}`)),
    h("h1", {}, `${component.name} ${key}`), component.changes ? live : null, status, conflict,
    formSlot, buttons, history);
  renderForm();
  await loadHistory();

  function changedBy(actor, operation) {
    if (Object.keys(changes()).length) {
      fill(status, h("p", {class: "message warn"}, `${actor} changed this record (${operation}). Saving will show both versions.`));
      loadHistory();
      return;
    }
    fill(status, h("p", {class: "message"}, `${actor} changed this record (${operation}); showing it.`));
    refresh().catch((error) => notify(explain(error), "error"));
  }

  // The stream starts when it opens: a change made before that is found by comparing ETags.
  async function caughtUp() {
    live.textContent = "Live";
    live.className = "live on";
    const response = await request("GET", path(component, key), {query: {include_deleted: component.softDelete || null}});
    if (response.headers.get("ETag") !== etag) changedBy("Someone", "update");
  }

  if (component.changes) {
    follow(`/${component.name}/changes`, {signal, kind: `${component.name}:read`,
      onOpen: () => caughtUp().catch(() => {}),
      onError: (error) => { live.textContent = `Not live: ${explain(error)}`; live.className = "live off"; },
      onEvent: (event) => {
        let change;
        try {
          change = JSON.parse(event.data);
        } catch {
          return;
        }
        if (String(change.record_id) === String(key)) changedBy(change.actor, change.operation);
      }});
  }
}

/** One audit row: who, when, what, with a before/after table of the fields that changed. */
export function auditEntry(row) {
  const before = row.before ?? {};
  const after = row.after ?? {};
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .filter((name) => text(before[name]) !== text(after[name]));
  return h("li", {class: "event"},
    h("p", {}, h("strong", {}, row.operation), ` by ${row.actor} · ${when(row.timestamp)}`,
      row.component ? ` · ${row.component} ${row.record_id}` : ""),
    names.length ? h("table", {class: "diff"},
      h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Field"), h("th", {scope: "col"}, "Before"), h("th", {scope: "col"}, "After"))),
      h("tbody", {}, names.map((name) => h("tr", {}, h("th", {scope: "row"}, name),
        h("td", {class: "before"}, text(before[name])), h("td", {class: "after"}, text(after[name])))))) : null);
}

export async function renderCreate(main, component, info, signal) {
  if (!component.create) throw new ApiError(405, `${component.name} records cannot be created here`);
  const form = schemaForm(component.create, {});
  fill(main,
    h("p", {}, h("a", {href: `#/data/${component.name}`}, `← All ${component.name}`)),
    h("h1", {}, `New ${component.name} record`),
    h("form", {class: "record", novalidate: true, "aria-label": "New record", onsubmit: async (event) => {
      event.preventDefault();
      form.clearErrors();
      try {
        const response = await request("POST", `/${component.name}/`, {json: form.read(), kind: `${component.name}:write`});
        const row = await response.json();
        notify("Created.");
        location.hash = `#/data/${component.name}/${encodeURIComponent(row[component.key])}`;
      } catch (error) {
        if (error.status === 422 && Array.isArray(error.detail)) {
          const rest = form.showErrors(error.detail);
          if (rest.length) notify(rest.join("; "), "error");
        } else {
          notify(explain(error), "error");
        }
      }
    }}, form.element, h("button", {type: "submit", class: "primary"}, "Create")));
}
