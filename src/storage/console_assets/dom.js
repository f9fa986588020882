// A few helpers to build the page from plain DOM elements.

/** Create an element: h("button", {onclick: fn, class: "primary"}, "Save"). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  let value;
  for (const [key, item] of Object.entries(attrs ?? {})) {
    if (item == null || item === false) continue;
    if (key === "value") value = item;
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), item);
    else if (key === "class") element.className = item;
    else if (typeof item === "boolean") element.toggleAttribute(key, item);
    else element.setAttribute(key, item);
  }
  append(element, children);
  if (value !== undefined) element.value = value;
  return element;
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Replace an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

let counter = 0;
/** A unique id for label/input pairs. */
export function uid(prefix = "f") {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled input: field("Name", h("input", {...})). */
export function field(label, control, hint) {
  if (!control.id) control.id = uid();
  return h("div", {class: "field"},
    h("label", {for: control.id}, label), control,
    hint ? h("small", {class: "hint"}, hint) : null);
}

/** Show a short message in the status line (read by screen readers). */
export function notify(message, kind = "info") {
  const notice = document.getElementById("notice");
  fill(notice, h("p", {class: `message ${kind}`}, message));
  clearTimeout(notify.timer);
  if (kind !== "error") notify.timer = setTimeout(() => notice.replaceChildren(), 6000);
}

/** A value as table text. */
export function text(value) {
  if (value == null) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Save a blob as a file download. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", {href: url, download: name, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** The file name a response suggests in Content-Disposition, else a default. */
export function filename(response, fallback) {
  const header = response.headers.get("content-disposition") ?? "";
  const match = /filename="?([^";]+)"?/.exec(header);
  return match ? match[1] : fallback;
}
