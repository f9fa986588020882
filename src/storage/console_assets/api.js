// The app's own HTTP API: requests with the operator's name and token, errors, event streams.

const root = document.querySelector('meta[name="api-root"]')?.content ?? "";

export const session = {
  user: sessionStorage.getItem("console.user") ?? "",
  token: sessionStorage.getItem("console.token") ?? "",
};

export function saveSession(user, token) {
  session.user = user.trim();
  session.token = token.trim();
  sessionStorage.setItem("console.user", session.user);
  sessionStorage.setItem("console.token", session.token);
  denied.clear();
}

/** Kinds of routes ("workcells:write", "db:admin") the server refused with 401 or 403. */
export const denied = new Map();

/** Levels of routes (read, write, admin, replace) the credentials may not use, asked up front. */
export const refused = new Map();

/** The level of routes a kind belongs to: "workcells:write" -> "write", "db:admin" -> "admin". */
function levelOf(kind) {
  return kind.split(":").pop();
}

export function allowed(kind) {
  return !denied.has(kind) && !refused.has(levelOf(kind));
}

/**
 * Ask the server which levels of routes these credentials may use (``GET /db/access/{level}``,
 * which reads and writes nothing), so that refused actions are not offered in the first place.
 * Routers guarded on their own are still learned from their 401 and 403 answers.
 */
export async function probeAccess(levels) {
  refused.clear();
  await Promise.all(levels.map(async (level) => {
    const response = await fetch(url(`/db/access/${level}`), {headers: headers()});
    if (response.status === 401 || response.status === 403) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail;
      } catch {
        // no JSON body: the status text says enough
      }
      refused.set(level, typeof detail === "string" ? detail : describe(detail));
    }
  }));
}

export class ApiError extends Error {
  constructor(status, detail, response) {
    super(typeof detail === "string" ? detail : describe(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.response = response;
  }
}

/** A message for an error, saying what to do about a refused request. */
export function explain(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    return `Not allowed (${error.status}): ${error.message}. Enter a token that may do this.`;
  }
  if (error instanceof ApiError && error.status === 400 && !session.user) {
    return `${error.message}. Enter your operator name at the top.`;
  }
  return error.message ?? String(error);
}

function describe(detail) {
  if (!Array.isArray(detail)) return detail ? JSON.stringify(detail) : "";
  return detail.map((item) => `${(item.loc ?? []).slice(1).join(".")}: ${item.msg}`).join("; ");
}

export function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value == null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, item);
  }
  const search = params.toString();
  return `${root}${path}${search ? `?${search}` : ""}`;
}

export function headers(extra = {}) {
  const result = {...extra};
  if (session.token) result.Authorization = `Bearer ${session.token}`;
  if (session.user) result["X-User"] = session.user;
  return result;
}

async function toError(response, kind) {
  let detail = "";
  try {
    detail = (await response.json()).detail;
  } catch {
    detail = response.statusText;
  }
  if ((response.status === 401 || response.status === 403) && kind && !denied.has(kind)) {
    denied.set(kind, typeof detail === "string" ? detail : describe(detail));
    document.dispatchEvent(new CustomEvent("console:denied", {detail: kind}));
  }
  return new ApiError(response.status, detail, response);
}

/**
 * Call the API; answers the Response, or throws an ApiError for a status >= 400.
 * ``kind`` names the family of routes, remembered as refused on a 401 or 403.
 */
export async function request(method, path, {query, json, body, kind, headers: extra} = {}) {
  const init = {method, headers: headers(extra)};
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(url(path, query), init);
  if (!response.ok && response.status !== 304) throw await toError(response, kind);
  return response;
}

export async function getJSON(path, query, kind) {
  return (await request("GET", path, {query, kind})).json();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow a Server-Sent Events stream with fetch() (EventSource cannot send the token).
 * Calls onEvent({type, data, id}) for each event; reconnects after a dropped connection
 * with Last-Event-ID, until ``signal`` aborts. Errors a retry cannot mend (401, 403, 404,
 * 422) go to onError and end the stream.
 */
export async function follow(path, {query, signal, onEvent, onOpen, onError, kind}) {
  let last = null;
  while (!signal.aborted) {
    try {
      const extra = {Accept: "text/event-stream"};
      if (last) extra["Last-Event-ID"] = last;
      const response = await fetch(url(path, query), {headers: headers(extra), signal});
      if (!response.ok) {
        const error = await toError(response, kind);
        if ([401, 403, 404, 422].includes(response.status)) {
          onError?.(error);
          return;
        }
        throw error;
      }
      onOpen?.();
      await readEvents(response.body, (event) => {
        if (event.id) last = event.id;
        onEvent(event);
      });
    } catch (error) {
      if (signal.aborted) return;
      onError?.(error);
    }
    await sleep(1000);
  }
}

async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = {type: "message", data: [], id: null};
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") {
        if (event.data.length) dispatch({...event, data: event.data.join("\n")});
        event = {type: "message", data: [], id: null};
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const content = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "data") event.data.push(content);
      else if (name === "event") event.type = content;
      else if (name === "id") event.id = content;
    }
  }
}
