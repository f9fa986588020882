// Programs: templates and their parameter schemas, stored programs edited with a generated form.

import {allowed, explain, getJSON, request} from "./api.js";
import {field, fill, h, notify, when} from "./dom.js";
import {runsTable} from "./runs.js";
import {schemaForm} from "./schemaform.js";

const WRITE = "programs:write";

export async function renderPrograms(main, info, signal) {
  const prefix = info.programs.prefix;
  const [templates, programs] = await Promise.all([
    getJSON(`${prefix}/program-templates`, null, "programs:read"),
    getJSON(`${prefix}/programs`, null, "programs:read"),
  ]);
  fill(main,
    h("h1", {}, "Programs"),
    h("section", {"aria-labelledby": "stored"},
      h("h2", {id: "stored"}, "Stored programs"),
      programs.length ? h("div", {class: "table-wrap"}, h("table", {class: "records"},
        h("thead", {}, h("tr", {}, ["Program", "Template", "Valid", "Updated", ""].map((name) => h("th", {scope: "col"}, name)))),
        h("tbody", {}, programs.map((program) => h("tr", {},
          h("td", {}, h("a", {href: `#/programs/${encodeURIComponent(program.name)}`}, program.name)),
          h("td", {}, program.template_name),
          h("td", {}, program.valid ? "yes" : "no: see the program"),
          h("td", {}, when(program.updated_at)),
          h("td", {}, info.programs.runs && allowed("runs:write")
            ? h("button", {class: "primary", "aria-label": `Start ${program.name}`, onclick: () => start(info, program.name)}, "Start") : null))))))
        : h("p", {}, "No program is stored yet: create one from a template below.")),
    h("section", {"aria-labelledby": "templates"},
      h("h2", {id: "templates"}, "Templates"),
      h("ul", {class: "cards"}, templates.map((template) => h("li", {class: "card"},
        h("h3", {}, template.title ?? template.name),
        h("p", {class: "hint"}, `${template.name}${template.version ? ` · version ${template.version}` : ""}${template.available ? "" : " · no longer in the code"}`),
        template.description ? h("p", {}, template.description) : null,
        h("details", {}, h("summary", {}, "Parameters"), parameterList(template.json_schema)),
        template.available && allowed(WRITE)
          ? h("a", {class: "button", href: `#/programs/new/${encodeURIComponent(template.name)}`,
            "aria-label": `New ${template.title ?? template.name} program`}, "New program") : null)))));
}

function parameterList(schema) {
  return h("ul", {class: "parameters"}, Object.entries(schema?.properties ?? {}).map(([name, property]) =>
    h("li", {}, h("code", {}, name), (schema.required ?? []).includes(name) ? " (required)" : "",
      property.description ? `: ${property.description}` : "")));
}

/** Start a stored program and open its run. */
export async function start(info, name) {
  try {
    const response = await request("POST", `${info.programs.prefix}/programs/${encodeURIComponent(name)}/runs`, {kind: "runs:write"});
    const run = await response.json();
    notify(`Started ${name}: run ${run.id}.`);
    location.hash = `#/runs/${run.id}`;
  } catch (error) {
    notify(explain(error), "error");
  }
}

export async function renderProgram(main, name, templateName, info, signal) {
  const prefix = info.programs.prefix;
  const program = name ? await getJSON(`${prefix}/programs/${encodeURIComponent(name)}`, null, "programs:read") : null;
  const template = await getJSON(`${prefix}/program-templates/${encodeURIComponent(program?.template_name ?? templateName)}`, null, "programs:read");
  const form = schemaForm(template.json_schema, program?.data ?? {}, {legend: "Parameters"});
  const nameInput = h("input", {name: "program", required: true, pattern: "[A-Za-z0-9_.\\-]+", value: name ?? ""});
  const runs = h("div");

  async function submit(event) {
    event.preventDefault();
    form.clearErrors();
    const target = name ?? nameInput.value.trim();
    const json = name ? {data: form.read()} : {template_name: template.name, data: form.read()};
    try {
      await request(name ? "PUT" : "POST", `${prefix}/programs/${encodeURIComponent(target)}`, {json, kind: WRITE});
      notify(name ? "Saved." : `Stored ${target}.`);
      if (!name) location.hash = `#/programs/${encodeURIComponent(target)}`;
    } catch (error) {
      if (error.status === 422 && Array.isArray(error.detail)) {
        const rest = form.showErrors(error.detail, 2);
        notify(rest.length ? rest.join("; ") : "Some parameters are not valid: see the messages at the fields.", "error");
      } else {
        notify(explain(error), "error");
      }
    }
  }

  async function remove() {
    if (!confirm(`Delete the program ${name}?`)) return;
    try {
      await request("DELETE", `${prefix}/programs/${encodeURIComponent(name)}`, {kind: WRITE});
      notify(`Deleted ${name}.`);
      location.hash = "#/programs";
    } catch (error) {
      notify(explain(error), "error");
    }
  }

  fill(main,
    h("p", {}, h("a", {href: "#/programs"}, "← Programs")),
    h("h1", {}, name ? `Program ${name}` : `New ${template.title ?? template.name} program`),
    h("p", {class: "hint"}, `Template ${template.name}${template.description ? `: ${template.description}` : ""}`),
    program && !program.valid ? h("p", {class: "message warn"}, `This program no longer matches its template: ${JSON.stringify(program.validation_errors)}`) : null,
    h("form", {class: "record", novalidate: true, "aria-label": "Program", onsubmit: submit},
      name ? null : field("Program name", nameInput, "Letters, digits, _ . -"),
      form.element,
      allowed(WRITE) ? h("button", {type: "submit", class: "primary"}, name ? "Save" : "Store program") : null),
    name ? h("div", {class: "actions"},
      info.programs.runs && allowed("runs:write") ? h("button", {class: "primary", onclick: () => start(info, name)}, "Start") : null,
      allowed(WRITE) ? h("button", {class: "danger", onclick: remove}, "Delete") : null) : null,
    runs);
  if (name && info.programs.runs) {
    try {
      const list = await getJSON(`${prefix}/programs/${encodeURIComponent(name)}/runs`, {limit: 10}, "programs:read");
      fill(runs, h("h2", {}, "Recent runs"), runsTable(list));
    } catch (error) {
      fill(runs, h("p", {class: "message error"}, explain(error)));
    }
  }
}
