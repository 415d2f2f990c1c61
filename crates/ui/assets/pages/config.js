// The configuration, as DBLab's /admin/config projects it: the clones' settings and (logical
// mode) the refresh timetable, the source and the dump's and restore's options; saved through
// POST /admin/config, which validates, writes the file and applies it live. Locked, with the
// reason said, when the server refuses changes through the API. The whole running
// configuration (secrets masked) is shown below it.
import { call, get, post } from "../api.js";
import { field, fill, h, showError, showInfo } from "../dom.js";
import { parseSettings } from "../format.js";

// `name = value` lines from an object.
const lines = (object) => Object.entries(object || {}).map(([k, v]) => `${k} = ${v}`).join("\n");

// Databases as lines: `name` (all its tables) or `name: table, table`.
function parseDatabases(text) {
  const databases = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const [name, tables] = line.split(":", 2).map((part) => part.trim());
    databases[name] = tables ? { tables: tables.split(",").map((t) => t.trim()).filter(Boolean) } : {};
  }
  return databases;
}
const databaseLines = (databases) => Object.entries(databases || {})
  .map(([name, d]) => (d && d.tables && d.tables.length ? `${name}: ${d.tables.join(", ")}` : name)).join("\n");

const words = (text) => text.split(/\s+/).filter(Boolean);

export async function render(main) {
  main.append(h("h1", {}, "Configuration"));
  const holder = h("div");
  const yaml = h("pre", { class: "log", tabindex: 0, "aria-label": "The running configuration as YAML" });
  main.append(holder, h("section", { class: "card wide", "aria-label": "Running configuration" },
    h("details", {}, h("summary", {}, "The whole running configuration (YAML, secrets masked)"), yaml)));
  const [status, projection] = await Promise.all([get("/status"), get("/admin/config")]);
  fill(holder, form(projection, Boolean(status.engine?.disableConfigModification), () => loadYaml(yaml)));
  await loadYaml(yaml);
}

async function loadYaml(pre) {
  pre.textContent = await call("GET", "/admin/config.yaml").catch((error) => `(${error.message})`);
}

function form(projection, locked, saved) {
  const mode = projection.retrievalMode || "unknown";
  const settings = h("textarea", { id: "cfg-settings", rows: 5, spellcheck: "false", placeholder: "shared_buffers = 128MB" });
  settings.value = lines(projection.databaseConfigs?.configs);
  const parts = [
    h("p", {}, "Retrieval mode: ", h("strong", { "data-field": "retrieval-mode" }, mode)),
    locked ? h("p", { class: "note error", id: "config-locked", role: "note" },
      "This server refuses configuration changes through the API: [server] disable_config_modification is set, or it runs without a configuration file (--config). Change the file and send SIGHUP instead.") : null,
    field("Clone settings", settings, "postgresql.conf lines every clone starts with, one name = value per line."),
  ];
  const logical = mode === "logical" ? logicalFields(projection) : null;
  if (logical) parts.push(logical.element);
  else parts.push(h("p", { class: "muted" }, mode === "physical"
    ? "Physical mode's settings are edited in [retrieval.physical] of the configuration file."
    : "No retrieval is configured: add a [retrieval] section with a source to the configuration file."));
  const save = h("button", { type: "submit", class: "primary" }, "Save and apply");
  const element = h("form", { class: "card", "aria-label": "Settings" },
    h("fieldset", { disabled: locked, class: "bare" }, parts, h("div", { class: "actions" }, save)));
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (save.disabled) return;
    save.disabled = true;
    save.setAttribute("aria-busy", "true");
    try {
      const body = { databaseConfigs: { configs: parseSettings(settings.value, "Clone settings") } };
      if (logical) body.retrieval = logical.value();
      const next = await post("/admin/config", body);
      showInfo("Saved: the file was written (the previous one kept beside it) and applied.");
      settings.value = lines(next.databaseConfigs?.configs);
      if (logical) logical.reset(next);
      await saved();
    } catch (error) {
      showError(error, "Save the configuration");
    } finally {
      save.disabled = false;
      save.removeAttribute("aria-busy");
    }
  });
  return element;
}

function logicalFields(projection) {
  const input = (id, attrs = {}) => h("input", { id, autocomplete: "off", spellcheck: "false", ...attrs });
  const timetable = input("cfg-timetable", { placeholder: "0 3 * * *" });
  const host = input("cfg-host");
  const port = input("cfg-port", { type: "number", min: 1, max: 65535 });
  const dbname = input("cfg-dbname");
  const username = input("cfg-username");
  const password = input("cfg-password", { type: "password", autocomplete: "new-password", placeholder: "unchanged" });
  const databases = h("textarea", { id: "cfg-databases", rows: 3, spellcheck: "false", placeholder: "app\nbilling: invoices, payments" });
  const dumpJobs = input("cfg-dump-jobs", { type: "number", min: 1 });
  const dumpOptions = input("cfg-dump-options", { placeholder: "--no-comments" });
  const restoreJobs = input("cfg-restore-jobs", { type: "number", min: 1 });
  const restoreOptions = input("cfg-restore-options");
  const ignoreErrors = h("input", { type: "checkbox", id: "cfg-ignore-errors" });
  const reset = (next) => {
    const retrieval = next.retrieval || {};
    const dump = retrieval.spec?.logicalDump?.options || {};
    const restore = retrieval.spec?.logicalRestore?.options || {};
    const connection = dump.source?.connection || {};
    timetable.value = retrieval.refresh?.timetable || "";
    host.value = connection.host || "";
    port.value = connection.port ?? "";
    dbname.value = connection.dbname || "";
    username.value = connection.username || "";
    password.value = "";
    databases.value = databaseLines(dump.databases);
    dumpJobs.value = dump.parallelJobs ?? "";
    dumpOptions.value = (dump.customOptions || []).join(" ");
    restoreJobs.value = restore.parallelJobs ?? "";
    restoreOptions.value = (restore.customOptions || []).join(" ");
    ignoreErrors.checked = Boolean(restore.ignoreErrors);
  };
  reset(projection);
  const element = [
    h("fieldset", {}, h("legend", {}, "Refresh"),
      field("Timetable", timetable, "Cron, in the server's time zone; empty: refresh only on request.")),
    h("fieldset", {}, h("legend", {}, "Source"),
      h("div", { class: "form-grid" }, field("Host", host), field("Port", port), field("Database", dbname), field("User", username),
        field("Password", password, "Kept in its own file, never shown; empty keeps the current one.")),
      field("Databases", databases, "One per line; \"name: table, table\" copies those tables only; empty: every database.")),
    h("fieldset", {}, h("legend", {}, "Dump and restore"),
      h("div", { class: "form-grid" },
        field("Dump jobs", dumpJobs), field("Dump options", dumpOptions, "Extra pg_dump options, space-separated."),
        field("Restore jobs", restoreJobs), field("Restore options", restoreOptions, "Extra pg_restore options, space-separated.")),
      h("div", { class: "field checkbox" }, ignoreErrors, h("label", { for: "cfg-ignore-errors" }, "Go on past restore errors (they become warnings)"))),
  ];
  const value = () => {
    const connection = {};
    for (const [key, control] of [["host", host], ["dbname", dbname], ["username", username]]) {
      if (control.value.trim()) connection[key] = control.value.trim();
    }
    if (port.value !== "") connection.port = Number(port.value);
    if (password.value) connection.password = password.value;
    const dump = { source: { connection }, databases: parseDatabases(databases.value), customOptions: words(dumpOptions.value) };
    if (dumpJobs.value !== "") dump.parallelJobs = Number(dumpJobs.value);
    const restore = { customOptions: words(restoreOptions.value), ignoreErrors: ignoreErrors.checked };
    if (restoreJobs.value !== "") restore.parallelJobs = Number(restoreJobs.value);
    return {
      refresh: { timetable: timetable.value.trim() },
      spec: { logicalDump: { options: dump }, logicalRestore: { options: restore } },
    };
  };
  return { element, value, reset };
}
