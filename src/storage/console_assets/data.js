// Data: one table per model with filters, sort, cursor paging, a column picker, live updates.

import {allowed, explain, follow, request} from "./api.js";
import {field, fill, h, notify, text} from "./dom.js";

const OPERATORS = [
  ["eq", "="], ["ne", "≠"], ["lt", "<"], ["lte", "≤"], ["gt", ">"], ["gte", "≥"],
  ["ilike", "contains"], ["like", "matches (case)"], ["in", "one of (a,b,c)"], ["isnull", "is empty (true/false)"],
];
const states = new Map();

function stateOf(component) {
  if (!states.has(component.name)) {
    const saved = JSON.parse(localStorage.getItem(`console.columns.${component.name}`) ?? "null");
    states.set(component.name, {
      filters: [], sort: "", limit: 25, cursor: null, previous: [], includeDeleted: false,
      columns: saved ?? component.fields.filter((name) => name !== "deleted_at"),
    });
  }
  return states.get(component.name);
}

export function recordHref(component, row) {
  return `#/data/${encodeURIComponent(component.name)}/${encodeURIComponent(row[component.key])}`;
}

export async function renderTable(main, component, info, signal) {
  const state = stateOf(component);
  const body = h("div", {class: "table-wrap"});
  const pager = h("div", {class: "pager"});
  const chips = h("ul", {class: "chips", "aria-label": "Filters"});
  const live = h("span", {class: "live", role: "status"}, "Connecting…");
  let flash = new Set();

  async function load() {
    const query = {sort: state.sort, limit: state.limit, cursor: state.cursor, count: true,
      include_deleted: state.includeDeleted || null};
    for (const {name, op, value} of state.filters) query[op === "eq" ? name : `${name}__${op}`] = value;
    try {
      const response = await request("GET", `/${component.name}/`, {query, kind: `${component.name}:read`});
      const rows = await response.json();
      if (signal.aborted) return;
      fill(body, table(rows));
      fill(pager, pagerControls(response, rows.length));
      flash = new Set();
    } catch (error) {
      if (error.status === 422 && state.cursor) {
        state.cursor = null;
        state.previous = [];
        return load();
      }
      fill(body, h("p", {class: "message error"}, explain(error)));
    }
  }

  function table(rows) {
    const columns = state.columns.filter((name) => component.fields.includes(name));
    const head = columns.map((name) => {
      const direction = state.sort === name ? "ascending" : state.sort === `-${name}` ? "descending" : null;
      const next = direction === "ascending" ? `-${name}` : direction === "descending" ? "" : name;
      return h("th", {scope: "col", "aria-sort": direction ?? "none"},
        h("button", {class: "sort", onclick: () => { state.sort = next; restart(); }},
          name, direction === "ascending" ? " ▲" : direction === "descending" ? " ▼" : ""));
    });
    if (!rows.length) return h("p", {}, "No records match.");
    return h("table", {class: "records"},
      h("caption", {class: "sr-only"}, `${component.name}, sorted by ${state.sort || component.key}`),
      h("thead", {}, h("tr", {}, head)),
      h("tbody", {}, rows.map((row) => h("tr", {
        class: [row.deleted_at ? "deleted" : "", flash.has(String(row[component.key])) ? "flash" : ""].join(" "),
        "data-key": String(row[component.key]),
      }, columns.map((name, index) => h("td", {}, index === 0
        ? h("a", {href: recordHref(component, row)}, text(row[name]) || "(empty)")
        : text(row[name])))))));
  }

  function pagerControls(response, count) {
    const total = response.headers.get("X-Total-Count");
    const next = response.headers.get("X-Next-Cursor");
    const page = state.previous.length + 1;
    return [
      h("span", {}, `Page ${page} · ${count} shown${total === null ? "" : ` of ${total}`}`),
      h("button", {disabled: page === 1, onclick: () => { state.cursor = state.previous.pop() ?? null; load(); }}, "Previous page"),
      h("button", {disabled: !next, onclick: () => { state.previous.push(state.cursor); state.cursor = next; load(); }}, "Next page"),
      field("Rows per page", h("select", {value: String(state.limit), onchange: (event) => { state.limit = Number(event.target.value); restart(); }},
        [10, 25, 50, 100].map((size) => h("option", {value: String(size)}, size)))),
    ];
  }

  function restart() {
    state.cursor = null;
    state.previous = [];
    renderChips();
    load();
  }

  function renderChips() {
    fill(chips, state.filters.map((filter, index) => h("li", {},
      h("span", {}, `${filter.name} ${OPERATORS.find(([op]) => op === filter.op)[1]} ${filter.value}`),
      h("button", {class: "small", "aria-label": `Remove filter ${filter.name} ${filter.op} ${filter.value}`,
        onclick: () => { state.filters.splice(index, 1); restart(); }}, "✕"))));
  }

  const filterForm = h("form", {class: "filter", "aria-label": "Add a filter", onsubmit: (event) => {
    event.preventDefault();
    const form = event.target;
    state.filters.push({name: form.fieldName.value, op: form.op.value, value: form.value.value});
    form.value.value = "";
    restart();
  }},
    field("Field", h("select", {name: "fieldName"}, component.filters.map((name) => h("option", {value: name}, name)))),
    field("Condition", h("select", {name: "op"}, OPERATORS.map(([op, label]) => h("option", {value: op}, label)))),
    field("Value", h("input", {name: "value", type: "search"})),
    h("button", {type: "submit"}, "Add filter"));

  const picker = h("details", {class: "columns"}, h("summary", {}, "Columns"),
    h("fieldset", {}, h("legend", {class: "sr-only"}, "Columns to show"),
      component.fields.map((name) => field(name, h("input", {type: "checkbox", checked: state.columns.includes(name),
        onchange: (event) => {
          state.columns = component.fields.filter((item) => item === name ? event.target.checked : state.columns.includes(item));
          localStorage.setItem(`console.columns.${component.name}`, JSON.stringify(state.columns));
          load();
        }})))));

  const actions = h("div", {class: "actions"},
    component.create && allowed(`${component.name}:write`)
      ? h("a", {class: "button primary", href: `#/data/${component.name}/new`}, "New record") : null,
    component.softDelete ? field("Show deleted", h("input", {type: "checkbox", checked: state.includeDeleted,
      onchange: (event) => { state.includeDeleted = event.target.checked; restart(); }})) : null,
    component.changes ? live : null);

  fill(main,
    h("h1", {}, `Data: ${component.name}`),
    h("nav", {class: "tabs", "aria-label": "Models"}, info.components.map((item) =>
      h("a", {href: `#/data/${item.name}`, "aria-current": item === component ? "page" : null}, item.name))),
    actions, filterForm, chips, picker, body, pager);
  renderChips();
  await load();

  if (component.changes) {
    let timer;
    follow(`/${component.name}/changes`, {signal, kind: `${component.name}:read`,
      onOpen: () => { live.textContent = "Live"; live.className = "live on"; },
      onError: (error) => { live.textContent = `Not live: ${explain(error)}`; live.className = "live off"; },
      onEvent: (event) => {
        if (event.type === "reset") notify("The database was restored; the table was reloaded.");
        try {
          flash.add(String(JSON.parse(event.data).record_id));
        } catch {
          // a reset carries no record
        }
        clearTimeout(timer);
        timer = setTimeout(load, 150);
      }});
  }
}
