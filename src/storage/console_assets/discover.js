// What the app offers, read from its OpenAPI document: the models, the /db and program routes.

import {getJSON} from "./api.js";

const LIST_PARAMETERS = new Set(["limit", "offset", "cursor", "sort", "include_deleted", "count"]);

export async function discover() {
  const spec = await getJSON("/openapi.json");
  const paths = spec.paths ?? {};
  const resolve = (schema) => {
    if (!schema?.$ref) return schema ?? {};
    return spec.components.schemas[schema.$ref.split("/").pop()] ?? {};
  };
  const has = (path, method) => Boolean(paths[path]?.[method]);
  const components = [];
  for (const path of Object.keys(paths)) {
    const match = /^\/([^/{}]+)\/$/.exec(path);
    if (!match || !has(`/${match[1]}/{id}`, "get") || !has(path, "get")) continue;
    const name = match[1];
    const one = paths[`/${name}/{id}`];
    const idParameter = one.get.parameters?.find((item) => item.in === "path");
    const read = resolve(one.get.responses?.["200"]?.content?.["application/json"]?.schema);
    const fields = Object.keys(read.properties ?? {});
    const key = /The (\S+) of the record/.exec(idParameter?.description ?? "")?.[1];
    components.push({
      name,
      fields,
      read,
      key: fields.includes(key) ? key : (fields.includes("id") ? "id" : fields[0]),
      create: has(path, "post") ? resolve(paths[path].post.requestBody?.content?.["application/json"]?.schema) : null,
      update: has(`/${name}/{id}`, "patch") ? resolve(one.patch.requestBody?.content?.["application/json"]?.schema) : null,
      filters: (paths[path].get.parameters ?? [])
        // One per column: the operator variants (name__gte, ...) are offered by the filter form.
        .filter((item) => item.in === "query" && !LIST_PARAMETERS.has(item.name) && !item.name.includes("__"))
        .map((item) => item.name),
      canDelete: has(`/${name}/{id}`, "delete"),
      softDelete: fields.includes("deleted_at") && has(`/${name}/{id}/restore`, "post"),
      changes: has(`/${name}/changes`, "get"),
    });
  }
  const programs = Object.keys(paths).find((path) => path.endsWith("/program-templates"));
  const prefix = programs ? programs.slice(0, -"/program-templates".length) : null;
  return {
    spec,
    components,
    has,
    access: ["read", "write", "admin", "replace"].filter((level) => has(`/db/access/${level}`, "get")),
    db: {
      health: has("/db/health", "get"),
      ready: has("/db/ready", "get"),
      audit: has("/db/audit", "get"),
      auditVerify: has("/db/audit/verify", "get"),
      changes: has("/db/changes", "get"),
      diagram: has("/db/diagram.svg", "get"),
      backup: has("/db/backup.sqlite", "get"),
      restore: has("/db/restore", "post"),
      exportZip: has("/db/export.zip", "get"),
      import: has("/db/import", "post"),
    },
    programs: prefix === null ? null : {
      prefix,
      runs: has(`${prefix}/runs`, "get"),
      runEvents: has(`${prefix}/runs/events`, "get"),
      stats: has(`${prefix}/database/stats`, "get"),
    },
  };
}

/** The type a JSON schema property stands for, with ``null`` taken out of an anyOf. */
export function simplify(schema) {
  if (!schema) return {};
  const options = schema.anyOf ?? schema.oneOf;
  if (options) {
    const real = options.filter((option) => option.type !== "null");
    if (real.length === 1) {
      return {...real[0], nullable: real.length < options.length, title: schema.title,
        description: schema.description, default: schema.default};
    }
  }
  return schema;
}
