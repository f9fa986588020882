// The console's shell: who is at the panel, the page menu, and which page the address shows.

import {ApiError, denied, explain, probeAccess, saveSession, session} from "./api.js";
import {renderAudit} from "./audit.js";
import {renderTable} from "./data.js";
import {renderDatabase} from "./database.js";
import {discover} from "./discover.js";
import {fill, h, notify} from "./dom.js";
import {renderProgram, renderPrograms} from "./programs.js";
import {renderCreate, renderRecord} from "./record.js";
import {renderRun, renderRuns} from "./runs.js";

const main = document.getElementById("main");
let info;
let current = new AbortController();

function pages() {
  const list = [];
  if (info.components.length) list.push(["Data", "#/data"]);
  if (info.programs) list.push(["Programs", "#/programs"]);
  if (info.programs?.runs) list.push(["Runs", "#/runs"]);
  if (Object.values(info.db).some(Boolean)) list.push(["Database", "#/database"]);
  if (info.db.audit) list.push(["Audit", "#/audit"]);
  return list;
}

function renderNav() {
  const here = location.hash || "#/";
  fill(document.getElementById("nav"), h("ul", {}, pages().map(([label, href]) =>
    h("li", {}, h("a", {href, "aria-current": here.startsWith(href) ? "page" : null}, label)))));
}

const routes = [
  [/^#\/data\/([^/]+)\/new$/, (m, signal) => renderCreate(main, component(m[1]), info, signal)],
  [/^#\/data\/([^/]+)\/(.+)$/, (m, signal) => renderRecord(main, component(m[1]), decodeURIComponent(m[2]), info, signal)],
  [/^#\/data\/([^/]+)$/, (m, signal) => renderTable(main, component(m[1]), info, signal)],
  [/^#\/data$/, (m, signal) => renderTable(main, info.components[0], info, signal)],
  [/^#\/programs\/new\/(.+)$/, (m, signal) => renderProgram(main, null, decodeURIComponent(m[1]), info, signal)],
  [/^#\/programs\/(.+)$/, (m, signal) => renderProgram(main, decodeURIComponent(m[1]), null, info, signal)],
  [/^#\/programs$/, (m, signal) => renderPrograms(main, info, signal)],
  [/^#\/runs\/(\d+)$/, (m, signal) => renderRun(main, m[1], info, signal)],
  [/^#\/runs$/, (m, signal) => renderRuns(main, info, signal)],
  [/^#\/database$/, (m, signal) => renderDatabase(main, info, signal)],
  [/^#\/audit$/, (m, signal) => renderAudit(main, info, signal)],
];

function component(name) {
  const found = info.components.find((item) => item.name === decodeURIComponent(name));
  if (!found) throw new ApiError(404, `no model called ${name}`);
  return found;
}

async function show() {
  current.abort();
  current = new AbortController();
  const signal = current.signal;
  renderNav();
  const hash = location.hash;
  const route = routes.find(([pattern]) => pattern.test(hash));
  if (!route) {
    const first = pages()[0];
    if (first) location.replace(first[1]);
    else fill(main, h("p", {}, "This app serves no routes the console knows."));
    return;
  }
  fill(main, h("p", {}, "Loading…"));
  try {
    await route[1](route[0].exec(hash), signal);
    const heading = main.querySelector("h1");
    if (heading && !signal.aborted) document.title = `${heading.textContent} · Operator console`;
  } catch (error) {
    if (signal.aborted) return;
    fill(main, h("h1", {}, "Cannot show this page"), h("p", {class: "message error"}, explain(error)));
  }
}

function setUpLogin() {
  const form = document.getElementById("login");
  form.operator.value = session.user;
  form.token.value = session.token;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveSession(form.operator.value, form.token.value);
    notify(`Working as ${session.user || "nobody"}.`);
    probeAccess(info?.access ?? []).then(show);
  });
}

document.addEventListener("console:denied", () => {
  const reasons = [...new Set(denied.values())].join("; ");
  notify(`Some actions are not offered: the server refused them (${reasons}).`, "error");
  show();  // again, without what was refused
});

async function start() {
  setUpLogin();
  try {
    info = await discover();
  } catch (error) {
    fill(main, h("h1", {}, "Cannot reach the app"), h("p", {class: "message error"}, explain(error)));
    return;
  }
  await probeAccess(info.access);
  window.addEventListener("hashchange", show);
  await show();
}

start();
