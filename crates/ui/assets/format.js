// How values read: sizes, times, statuses, and a clone's connection strings.
import { h } from "./dom.js";

export function bytes(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

// The API's times are RFC 3339 in the server's zone, "" or null for none.
export function time(value) {
  if (!isSet(value)) return "—";
  // Branches and commits state their time as DBLab does, YYYYMMDDHHMMSS in UTC.
  const compact = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(value);
  const date = new Date(compact ? `${compact[1]}-${compact[2]}-${compact[3]}T${compact[4]}:${compact[5]}:${compact[6]}Z` : value);
  if (Number.isNaN(date.getTime())) return value;
  return h("time", { datetime: date.toISOString(), title: date.toString() }, `${date.toLocaleString()} (${relative(date)})`);
}

export function relative(date) {
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [365, "day"], [Infinity, "year"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(Math.round(value), unit);
    value /= size;
  }
  return "";
}

// A length of time in words: "2 h 5 min", "3 min 20 s", "45 s".
export function duration(seconds) {
  if (seconds === undefined || seconds === null || Number.isNaN(Number(seconds))) return "—";
  let left = Math.max(0, Math.round(Number(seconds)));
  const parts = [];
  for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]]) {
    if (left >= size || (unit === "s" && !parts.length)) {
      parts.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

// Go's zero time ("0001-01-01T00:00:00Z") and empty strings mean "not yet".
export const isSet = (value) => Boolean(value) && !String(value).startsWith("0001-01-01");

const TONES = { OK: "ok", WARNING: "warn", FATAL: "bad", Error: "bad", Down: "bad", finished: "ok", failed: "bad", active: "ok",
  passed: "ok", running: "busy", delivered: "ok", dropped_queue_full: "bad", dropped_shutdown: "warn", stopped: "warn", inactive: "ok" };

export function badge(code, message) {
  return h("span", { class: `badge ${TONES[code] || "busy"}`, title: message || undefined }, code || "—");
}

// A progress bar with its numbers in words for screen readers; a usage bar (the default) warns
// as it fills, a fill bar (`full: "good"`) never does.
export function bar(done, total, label, { full = "bad" } = {}) {
  const percent = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : 0;
  const tone = full !== "bad" ? "" : percent > 90 ? "bad" : percent > 75 ? "warn" : "";
  return h("div", { class: "bar", role: "progressbar", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent, "aria-valuetext": `${percent}%` },
    h("span", { class: `fill ${tone}`, "data-width": percent }));
}

// Widths are set from script: the CSP allows no inline style attributes.
export function sizeBars(root) {
  for (const fillEl of root.querySelectorAll(".fill[data-width]")) fillEl.style.width = `${fillEl.dataset.width}%`;
}

// Percent-encoding that also covers what a shell's single quotes or a URL's parts would read.
const enc = (value) => encodeURIComponent(value).replace(/['()*!~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

// The libpq URL, psql's command line (the URL in single quotes, safe in any POSIX shell) and
// JDBC forms of a clone's connection, with the password when it is known (only right after
// the create, in this tab).
export function connections(db, password) {
  const host = db.host || "localhost";
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const name = db.dbName || "postgres";
  const secret = password ? `:${enc(password)}` : "";
  const url = `postgresql://${enc(db.username)}${secret}@${hostPart}:${db.port}/${enc(name)}`;
  return [
    { label: "psql", text: `psql '${url}'` },
    { label: "libpq URL", text: url },
    { label: "JDBC", text: `jdbc:postgresql://${hostPart}:${db.port}/${enc(name)}?user=${enc(db.username)}${password ? `&password=${enc(password)}` : ""}` },
  ];
}

// postgresql.conf-style `name = value` lines (blank lines and # comments skipped) to an object;
// `what` names the field in the error.
export function parseSettings(text, what) {
  const settings = {};
  for (const [index, line] of text.split("\n").entries()) {
    if (!line.trim() || line.trim().startsWith("#")) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`${what}, line ${index + 1}: write name = value.`);
    settings[line.slice(0, at).trim()] = line.slice(at + 1).trim().replace(/^'(.*)'$/, "$1");
  }
  return settings;
}
