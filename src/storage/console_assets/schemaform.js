// Forms generated from JSON schemas: records (the OpenAPI schemas) and program parameters.

import {simplify} from "./discover.js";
import {h, uid} from "./dom.js";

/**
 * Build a form section for ``schema`` filled with ``value``.
 * Answers {element, read(), showErrors(detail, skip), clearErrors()}; read() gives the value
 * (fields left empty are left out, so the server's defaults apply), showErrors() puts the
 * server's 422 messages next to their fields (``skip`` leading parts of each ``loc``).
 */
export function schemaForm(schema, value = {}, {root = schema, readOnly = [], legend} = {}) {
  const leaves = [];
  const errors = new Map();
  const resolve = (node) => {
    let current = simplify(node);
    while (current.$ref) {
      const target = root.$defs?.[current.$ref.split("/").pop()] ?? {};
      current = {...simplify(target), title: current.title ?? target.title,
        description: current.description ?? target.description, nullable: current.nullable};
    }
    return current;
  };
  const element = objectSection(resolve(schema), value ?? {}, [], legend);

  function objectSection(node, current, path, title) {
    const children = [];
    for (const [name, property] of Object.entries(node.properties ?? {})) {
      const child = resolve(property);
      const required = (node.required ?? []).includes(name);
      const where = [...path, name];
      if (child.properties) {
        children.push(objectSection(child, current?.[name] ?? {}, where, simplify(property).title ?? name));
      } else {
        children.push(leaf(child, current?.[name], where, required));
      }
    }
    const errorLine = errorSlot(path);
    if (!path.length && !title) return h("div", {class: "schema-form"}, errorLine, children);
    return h("fieldset", {class: "group"}, h("legend", {}, title), errorLine, children);
  }

  function errorSlot(path) {
    const slot = h("p", {class: "field-error", id: uid("err"), hidden: true});
    errors.set(path.join("."), slot);
    return slot;
  }

  function leaf(node, current, path, required) {
    const name = path.join(".");
    const id = uid("in");
    const slot = errorSlot(path);
    const locked = readOnly.includes(name);
    const attrs = {id, name, "data-path": name, "aria-describedby": slot.id, disabled: locked,
      required: required && !locked && !node.nullable};
    let control;
    let kind;
    if (node.enum) {
      kind = "enum";
      control = h("select", attrs, required ? null : h("option", {value: ""}, "(none)"),
        node.enum.map((option) => h("option", {value: option}, option)));
      control.value = current ?? node.default ?? "";
    } else if (node.type === "boolean") {
      kind = "boolean";
      control = h("input", {...attrs, type: "checkbox", checked: Boolean(current ?? node.default)});
    } else if (node.type === "integer" || node.type === "number") {
      kind = "number";
      control = h("input", {...attrs, type: "number", inputmode: "decimal",
        step: node.type === "integer" ? "1" : "any", min: node.minimum ?? node.exclusiveMinimum,
        max: node.maximum ?? node.exclusiveMaximum, value: current ?? "",
        placeholder: node.default ?? ""});
    } else if (node.type === "string") {
      kind = "string";
      control = h("input", {...attrs, type: "text", maxlength: node.maxLength, value: current ?? "",
        placeholder: node.format === "date-time" ? "2026-01-31T08:00:00Z" : (node.default ?? "")});
    } else {
      kind = "json";
      control = h("textarea", {...attrs, rows: 3, spellcheck: "false"});
      control.value = current === undefined ? "" : JSON.stringify(current);
    }
    leaves.push({path, control, kind, node, required});
    const label = `${node.title ?? path.at(-1)}${required ? " *" : ""}`;
    const hint = [node.description, kind === "json" ? "JSON" : null].filter(Boolean).join(" · ");
    return h("div", {class: `field ${kind === "boolean" ? "check" : ""}`},
      h("label", {for: id}, label), control,
      hint ? h("small", {class: "hint"}, hint) : null, slot);
  }

  function readLeaf({control, kind, node}) {
    if (kind === "boolean") return control.checked;
    const raw = control.value.trim();
    if (raw === "") return node.nullable && node.default === undefined ? null : undefined;
    if (kind === "number") return Number.isNaN(Number(raw)) ? raw : Number(raw);
    if (kind === "json") {
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
    }
    return kind === "enum" ? raw : control.value;
  }

  return {
    element,
    read() {
      const result = {};
      for (const item of leaves) {
        if (item.control.disabled) continue;
        const value = readLeaf(item);
        if (value === undefined) continue;
        let target = result;
        for (const part of item.path.slice(0, -1)) target = target[part] ??= {};
        target[item.path.at(-1)] = value;
      }
      return result;
    },
    clearErrors() {
      for (const slot of errors.values()) slot.hidden = true;
      for (const item of leaves) item.control.removeAttribute("aria-invalid");
    },
    showErrors(detail, skip = 1) {
      const unplaced = [];
      for (const item of Array.isArray(detail) ? detail : []) {
        const path = (item.loc ?? []).slice(skip);
        let slot;
        for (let size = path.length; size >= 0 && !slot; size -= 1) {
          slot = errors.get(path.slice(0, size).join("."));
        }
        if (!slot || (!path.length && !errors.has(""))) {
          unplaced.push(item.msg);
          continue;
        }
        slot.textContent = slot.hidden ? item.msg : `${slot.textContent}; ${item.msg}`;
        slot.hidden = false;
        leaves.find((leafItem) => leafItem.path.join(".") === path.join("."))
          ?.control.setAttribute("aria-invalid", "true");
      }
      const first = element.querySelector('[aria-invalid="true"]');
      first?.focus();
      return unplaced;
    },
  };
}
