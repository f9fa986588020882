// Runs: the history with filters, following live; one run with its output streaming, and stop.

import {allowed, explain, follow, getJSON, request} from "./api.js";
import {field, fill, h, notify, when} from "./dom.js";

const STATES = ["queued", "running", "completed", "failed", "cancelled"];
const ENDED = ["completed", "failed", "cancelled"];
const filters = {status: [], program: "", limit: 50};

export function runsTable(runs) {
  if (!runs.length) return h("p", {}, "No runs.");
  return h("div", {class: "table-wrap"}, h("table", {class: "records"},
    h("thead", {}, h("tr", {}, ["Run", "Program", "Status", "Started by", "Started", "Finished"].map((name) => h("th", {scope: "col"}, name)))),
    h("tbody", {}, runs.map((run) => h("tr", {"data-key": String(run.id)},
      h("td", {}, h("a", {href: `#/runs/${run.id}`}, `Run ${run.id}`)),
      h("td", {}, run.program_name),
      h("td", {}, h("span", {class: `badge ${run.status}`}, run.status)),
      h("td", {}, run.started_by ?? ""),
      h("td", {}, when(run.started_at ?? run.created_at)),
      h("td", {}, when(run.finished_at)))))));
}

export async function renderRuns(main, info, signal) {
  const prefix = info.programs.prefix;
  const list = h("div");
  const live = h("span", {class: "live", role: "status"}, "");

  const programs = h("select", {onchange: (event) => { filters.program = event.target.value; load(); }},
    h("option", {value: ""}, "Every program"));
  getJSON(`${prefix}/programs`, null, "programs:read")
    .then((stored) => {
      programs.append(...stored.map((program) => h("option", {value: program.name}, program.name)));
      programs.value = filters.program;
    })
    .catch(() => {});

  async function load() {
    const path = filters.program ? `${prefix}/programs/${encodeURIComponent(filters.program)}/runs` : `${prefix}/runs`;
    try {
      const runs = await getJSON(path, {status: filters.status, limit: filters.limit}, "programs:read");
      if (!signal.aborted) fill(list, runsTable(runs));
    } catch (error) {
      fill(list, h("p", {class: "message error"}, explain(error)));
    }
  }

  fill(main, h("h1", {}, "Runs"),
    h("form", {class: "filter", "aria-label": "Filter runs", onsubmit: (event) => event.preventDefault()},
      h("fieldset", {class: "inline"}, h("legend", {}, "Status"),
        STATES.map((status) => field(status, h("input", {type: "checkbox", checked: filters.status.includes(status),
          onchange: (event) => {
            filters.status = STATES.filter((item) => item === status ? event.target.checked : filters.status.includes(item));
            load();
          }})))),
      field("Program", programs),
      field("How many", h("select", {value: String(filters.limit), onchange: (event) => { filters.limit = Number(event.target.value); load(); }},
        [20, 50, 200, 500].map((size) => h("option", {value: String(size)}, size))))),
    live, list);
  await load();
  if (info.programs.runEvents) {
    let timer;
    follow(`${prefix}/runs/events`, {signal, kind: "programs:read",
      onOpen: () => { live.textContent = "Live"; live.className = "live on"; },
      onError: (error) => { live.textContent = `Not live: ${explain(error)}`; live.className = "live off"; },
      onEvent: () => { clearTimeout(timer); timer = setTimeout(load, 150); }});
  }
}

export async function renderRun(main, id, info, signal) {
  const prefix = info.programs.prefix;
  let run = await getJSON(`${prefix}/runs/${id}`, null, "programs:read");
  const summary = h("dl", {class: "summary"});
  const output = h("pre", {class: "output", role: "log", "aria-live": "polite", "aria-label": "Output", tabindex: "0"});
  const stop = h("button", {class: "danger", onclick: stopRun}, "Stop");
  const seen = new Set();

  function renderSummary() {
    fill(summary, [
      ["Program", h("a", {href: `#/programs/${encodeURIComponent(run.program_name)}`}, run.program_name)],
      ["Status", h("span", {class: `badge ${run.status}`, id: "run-status"}, run.status)],
      ["Started by", run.started_by ?? ""], ["Started", when(run.started_at)], ["Finished", when(run.finished_at)],
      ["Stopped by", run.stopped_by ?? ""], ["Error", run.error ?? ""],
    ].filter(([, value]) => value !== "").map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
    stop.hidden = ENDED.includes(run.status) || !allowed("runs:write");
  }

  async function stopRun() {
    stop.disabled = true;
    try {
      const response = await request("POST", `${prefix}/runs/${id}/stop`, {kind: "runs:write"});
      run = await response.json();
      renderSummary();
      notify(response.status === 202 ? "Stop requested: the run is stopping." : "Stopped.");
    } catch (error) {
      notify(explain(error), "error");
    } finally {
      stop.disabled = false;
    }
  }

  function addLine(line) {
    const key = `${line.stream}:${line.seq}`;
    if (seen.has(key)) return;
    seen.add(key);
    const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
    output.append(h("span", {class: `line-${line.stream}`}, `${line.text.replace(/\n$/, "")}\n`));
    if (atBottom) output.scrollTop = output.scrollHeight;
  }

  fill(main, h("p", {}, h("a", {href: "#/runs"}, "← Runs")), h("h1", {}, `Run ${id}`), summary,
    h("div", {class: "actions"}, stop), h("h2", {}, "Output"), output);
  renderSummary();
  // The stream ends after the final state; stop following then, and when the page changes.
  const finished = new AbortController();
  signal.addEventListener("abort", () => finished.abort());
  follow(`${prefix}/runs/${id}/events`, {signal: finished.signal, kind: "programs:read",
    onError: (error) => notify(explain(error), "error"),
    onEvent: (event) => {
      const data = JSON.parse(event.data);
      if (event.type === "status") {
        run = {...run, ...data};
        renderSummary();
        if (ENDED.includes(run.status)) finished.abort();
      } else if (event.type === "output" || event.type === "log") {
        addLine(data);
      }
    }});
}
