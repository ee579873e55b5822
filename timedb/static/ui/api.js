// The public API of the server that serves this page, as the page uses it: GET requests with
// an optional bearer token, and RFC 9457 problem documents turned into errors with a message.

const API = new URL("../", document.baseURI); // the page is at <root>/ui/: the API is at <root>/
const TOKEN_KEY = "timedb-token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (value) => (value ? sessionStorage.setItem(TOKEN_KEY, value) : sessionStorage.removeItem(TOKEN_KEY)),
};

/** An answer that is not a success: the problem document's title, status, detail and errors. */
export class Problem extends Error {
  constructor(doc) {
    super(doc.detail || doc.title);
    this.doc = doc;
  }

  /** Lines a person can read: "Title (status)", the detail, then one line per listed error. */
  lines() {
    const { title, status, detail, errors } = this.doc;
    const head = status ? `${title || "Error"} (${status})` : title || "Error";
    const faults = (errors || []).map((e) => [e.in, e.name || e.pointer, e.message].filter(Boolean).join(" "));
    return [head, ...(detail ? [detail] : []), ...faults];
  }
}

/** The URL of an API path with the given query parameters (empty and null ones left out). */
export function apiUrl(path, params = {}) {
  const url = new URL(path, API);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

/** GET an API path; resolves to the Response, rejects with a Problem. */
export async function get(path, params, signal) {
  const headers = { Accept: "application/json" };
  if (token.get()) headers.Authorization = `Bearer ${token.get()}`;
  let response;
  try {
    response = await fetch(apiUrl(path, params), { headers, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Problem({ title: "The server cannot be reached", detail: String(error.message || error) });
  }
  if (!response.ok) throw await asProblem(response);
  return response;
}

export async function getJson(path, params, signal) {
  return (await get(path, params, signal)).json();
}

async function asProblem(response) {
  let doc = null;
  if ((response.headers.get("content-type") || "").includes("json")) {
    doc = await response.json().catch(() => null);
  }
  if (!doc || typeof doc !== "object") doc = {};
  const title = doc.title || response.statusText || "Error";
  return new Problem({ ...doc, title, status: doc.status || response.status });
}

/** The cursor of a `Link: <...>; rel="next"` header, or null. */
export function nextCursor(response) {
  const link = response.headers.get("link") || "";
  const next = link.split(",").find((part) => /rel="?next"?/.test(part));
  const target = next && next.match(/<([^>]*)>/);
  return target ? new URL(target[1], API).searchParams.get("cursor") : null;
}
