// A clone's observation sessions (DBLab's /observation/*), for the clone's page: start one with
// its settings, its live state while it runs (intervals so far, dangerous locks seen), stop it
// with the caller's verdict, and the summary of the latest stopped session.
import { get, post, seg } from "../api.js";
import { action, fill, h, showInfo } from "../dom.js";
import { badge, duration, isSet, time } from "../format.js";

const CHECKS = [
  ["overall_success", "The observed work did not fail"],
  ["session_duration_acceptable", "The session lasted less than its maximum"],
  ["no_long_dangerous_locks", "No exclusive lock was held too long"],
];

// Returns the function the clone's page calls at each refresh with the clone's status code.
export function observation(cloneId, section) {
  let shown = null;
  let live = null;
  const summaries = new Map();
  return async (code) => {
    const sessions = await get(`/observation/sessions/${seg(cloneId)}`);
    const running = sessions.find((s) => !isSet(s.finished_at));
    const latest = sessions.find((s) => isSet(s.finished_at));
    if (latest && !summaries.has(latest.session_id)) {
      summaries.set(latest.session_id, await get(`/observation/summary/${seg(cloneId)}/${latest.session_id}`).catch((error) => ({ error: error.message })));
    }
    // Rebuilt only when what it offers changes, so a form being filled in keeps its values.
    const offer = `${running?.session_id}|${latest?.session_id}|${code === "OK"}`;
    if (offer !== shown) {
      shown = offer;
      live = h("p", { "data-field": "observation-live", "aria-live": "polite" });
      fill(section, h("h2", {}, "Observation"),
        running ? runningControls(cloneId, running, live) : startForm(cloneId, code === "OK"),
        latest ? summary(cloneId, latest, summaries.get(latest.session_id)) : null,
        sessions.length > 1 ? history(sessions.filter((s) => s !== running && s !== latest)) : null);
    }
    if (running) {
      const intervals = running.result?.intervals || [];
      const warnings = intervals.filter((i) => i.warning).length;
      live.textContent = `Running for ${duration(running.result?.summary?.total_duration)}: ${intervals.length} interval${intervals.length === 1 ? "" : "s"} checked, ${warnings} with a dangerous lock.`;
    }
  };
}

const seconds = (id, label, hint) => {
  const input = h("input", { type: "number", id, min: 0, step: 1, placeholder: "default" });
  return [input, h("div", { class: "field" }, h("label", { for: id }, label), input, h("small", { class: "muted" }, hint))];
};

function startForm(cloneId, ready) {
  const [interval, intervalField] = seconds("obs-interval", "Check every (s)", "Default 10.");
  const [lock, lockField] = seconds("obs-lock", "Longest exclusive lock (s)", "Default 10.");
  const [max, maxField] = seconds("obs-max", "Longest session (s)", "Default 3600.");
  const db = h("input", { id: "obs-db", placeholder: "the clone's database", autocomplete: "off" });
  return [
    h("p", { class: "muted" }, "Watches the clone for exclusive locks held too long while you run a migration, then gives a verdict and a summary."),
    h("div", { class: "form-grid" }, intervalField, lockField, maxField,
      h("div", { class: "field" }, h("label", { for: "obs-db" }, "Database"), db)),
    h("div", { class: "actions" }, action("Start observing", async () => {
      const config = {};
      if (interval.value !== "") config.observation_interval = Number(interval.value);
      if (lock.value !== "") config.max_lock_duration = Number(lock.value);
      if (max.value !== "") config.max_duration = Number(max.value);
      const body = { clone_id: cloneId, config };
      if (db.value.trim()) body.db_name = db.value.trim();
      const session = await post("/observation/start", body);
      showInfo(`Observation session ${session.session_id} started.`);
    }, { class: "primary", disabled: !ready })),
    ready ? null : h("p", { class: "muted" }, "A clone is observed only while its status is OK."),
  ];
}

function runningControls(cloneId, session, live) {
  const failed = h("input", { type: "checkbox", id: "obs-failed" });
  const config = session.config || {};
  return [
    h("p", {}, badge("running"), ` Session ${session.session_id}, started `, time(session.started_at), "."),
    live,
    h("p", { class: "muted" }, `Checks every ${config.observation_interval} s; an exclusive lock longer than ${config.max_lock_duration} s fails it, and so does a session longer than ${duration(config.max_duration)}.`),
    h("div", { class: "field checkbox" }, failed, h("label", { for: "obs-failed" }, "The observed work failed")),
    h("div", { class: "actions" }, action("Stop observing", async () => {
      const stopped = await post("/observation/stop", { clone_id: cloneId, overall_error: failed.checked });
      showInfo(`Observation session ${stopped.session_id} ${stopped.result?.status || "stopped"}.`);
    }, { class: "primary" })),
  ];
}

// Saves an artifact (the API's JSON rows) as a file: fetched with the token, since a plain
// link could not send it.
async function save(cloneId, sessionId, type) {
  const rows = await get(`/observation/download?artifact_type=${encodeURIComponent(type)}&clone_id=${encodeURIComponent(cloneId)}&session_id=${sessionId}`);
  const url = URL.createObjectURL(new Blob([JSON.stringify(rows, null, 2)], { type: "application/json" }));
  const link = h("a", { href: url, download: `${cloneId}-${sessionId}-${type}.json`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function summary(cloneId, session, artifact) {
  const result = session.result || {};
  const checklist = result.summary?.checklist || {};
  return h("div", { class: "group", "aria-label": `Summary of session ${session.session_id}`, role: "group", "data-session": session.session_id },
    h("h3", {}, `Session ${session.session_id}: `, badge(result.status || "stopped")),
    h("ul", { class: "plain", "aria-label": "Checks" }, CHECKS.map(([key, label]) => h("li", {}, checklist[key] ? "✓ " : "✗ ", label))),
    artifact && !artifact.error ? h("dl", {},
      h("dt", {}, "Duration"), h("dd", {}, artifact.duration?.total || "—"),
      h("dt", {}, "Longest query"), h("dd", {}, artifact.duration?.query_duration_longest || "—"),
      h("dt", {}, "Database size"), h("dd", {}, `${artifact.db_size?.total || "—"} (grew ${artifact.db_size?.diff || "—"})`),
      h("dt", {}, "Tables"), h("dd", {}, `${artifact.db_size?.objects_stat?.count ?? "—"}, about ${artifact.db_size?.objects_stat?.row_estimate_sum ?? "—"} rows`),
      h("dt", {}, "Intervals"), h("dd", {}, `${artifact.locks?.total_interval ?? 0}, ${artifact.locks?.warning_interval ?? 0} with a dangerous lock`),
      h("dt", {}, "Log errors"), h("dd", {}, artifact.log_errors?.count ? `${artifact.log_errors.count}: ${artifact.log_errors.message}` : "none"),
      h("dt", {}, "Artifacts"), h("dd", { class: "inline" }, artifactButtons(cloneId, session, artifact.artifact_types || session.artifacts || [])))
      : h("p", { class: "note error" }, artifact?.error || "No summary."),
    (result.intervals || []).some((i) => i.warning)
      ? h("details", {}, h("summary", {}, "Dangerous locks seen"), h("ul", { class: "plain" }, result.intervals.filter((i) => i.warning).map((i) =>
        h("li", {}, time(i.started_at), " ", h("code", { class: "wrap" }, i.warning)))))
      : null);
}

function artifactButtons(cloneId, session, types) {
  if (!types.length) return "none";
  return types.map((type) => action(type, () => save(cloneId, session.session_id, type), { class: "small", "aria-label": `Download ${type}` }));
}

function history(sessions) {
  if (!sessions.length) return null;
  return h("details", {}, h("summary", {}, `${sessions.length} earlier session${sessions.length === 1 ? "" : "s"}`),
    h("ul", { class: "plain" }, sessions.map((s) => h("li", {}, `Session ${s.session_id}: `, badge(s.result?.status || "stopped"), " ", time(s.started_at)))));
}
