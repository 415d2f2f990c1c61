// The public REST API, as the CLI uses it: JSON over fetch with the Verification-Token header.
// The token lives in sessionStorage only, so it is gone when the tab closes.

const TOKEN_KEY = "scion.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Every answer's error is the API's {code, message}; anything else still becomes a message.
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers["Verification-Token"] = token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "UNREACHABLE", `The server did not answer (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const code = (data && data.code) || String(response.status);
    const message =
      (data && data.message) || (typeof data === "string" && data) || response.statusText;
    const error = new ApiError(response.status, code, message);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("scion:unauthorized", { detail: error }));
    throw error;
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body ?? {});
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

// IDs go into paths as they are, except what a URL would read differently.
export const seg = (id) => encodeURIComponent(id).replaceAll("%2F", "/").replaceAll("%40", "@");

// /metrics is Prometheus text: the samples of one family as [{labels, value}].
export async function metrics() {
  const response = await fetch("/metrics", { cache: "no-store" });
  if (!response.ok) return new Map();
  const families = new Map();
  for (const line of (await response.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    const samples = families.get(match[1]) || [];
    samples.push({ labels, value: Number(match[4]) });
    families.set(match[1], samples);
  }
  return families;
}
