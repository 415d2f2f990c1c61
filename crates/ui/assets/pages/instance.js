// The instance: status, pool usage, retrieval with live progress and a full refresh, the
// latest and next refresh, alerts, reconciliation differences, the warm pool's fill per
// snapshot and webhook deliveries. Refreshes itself.
import { get, metrics, post } from "../api.js";
import { action, confirmDialog, every, h, redraw, showError, showInfo } from "../dom.js";
import { badge, bar, bytes, duration, sizeBars, time } from "../format.js";

// What each reconciliation difference means, in words (the kinds are the API's stable names).
const DIFFERENCES = {
  server_restarted: "A clone's server was not running; the engine started it again.",
  server_failed: "A clone's server was not running and could not be started; the clone is FATAL.",
  missing_dataset: "A clone's dataset is gone from the pool; the clone cannot run.",
  interrupted_operation: "An operation was cut short by a stop or crash; the engine ran it again or undid it.",
  orphan_dataset: "The pool holds a dataset no record names; it was left untouched.",
  missing_snapshot: "A recorded snapshot is gone from the pool; its record was removed.",
  unrecorded_snapshot: "The pool holds a snapshot no record names; it was left untouched.",
};

export function render(main) {
  let retrieving = null;
  const refresh = action("Full refresh", async () => {
    const mode = retrieving?.mode;
    if (!(await confirmDialog("Full refresh",
      `Copy the source's data again into a new dataset (${mode} mode)? Clones keep running on their snapshots meanwhile; new snapshots and clones use the new data once it is ready.`,
      "Start the refresh"))) return;
    const answer = await post("/full-refresh");
    showInfo(answer?.message || "Full refresh started.");
    // After the button's own busy state is over, so that the refresh's state disables it.
    setTimeout(() => tick().catch((error) => showError(error)), 0);
  }, { class: "primary", "aria-describedby": "refresh-why", disabled: true });
  const why = h("small", { id: "refresh-why", class: "muted" });
  const body = h("div", { class: "grid" });
  main.append(h("div", { class: "heading" }, h("h1", {}, "Instance"), h("div", { class: "stack end" }, refresh, why)), body);

  async function tick() {
    const [status, live, warmPool, deliveries, families] = await Promise.all([
      get("/status"),
      get("/instance/retrieval"),
      get("/instance/warm-pool"),
      get("/webhooks/deliveries?limit=20"),
      metrics().catch(() => new Map()),
    ]);
    retrieving = live;
    const running = ["refreshing", "snapshotting", "pending", "renewed"].includes(live.status);
    // Only the button's state changes, so a keyboard user's focus on it stays.
    refresh.disabled = live.mode === "unknown" || running;
    why.textContent = live.mode === "unknown"
      ? "No retrieval is configured: add a [retrieval] section with a source."
      : running ? "A refresh is running." : `Copies the source again (${live.mode} mode).`;
    redraw(body, summary(status), pools(status), retrieval(live), sync(status.synchronization),
      warm(warmPool, families), reconciliation(status.reconciliation), webhooks(deliveries, families));
    sizeBars(body);
  }
  // Faster while a refresh runs, so its progress moves.
  let stop = null;
  let pace = 0;
  const loop = () => every(pace, async () => {
    await tick();
    const next = ["refreshing", "snapshotting", "pending"].includes(retrieving?.status) ? 1000 : 3000;
    if (next !== pace) {
      pace = next;
      stop();
      stop = loop();
    }
  });
  pace = 3000;
  stop = loop();
  return () => stop();
}

const card = (title, ...children) => h("section", { class: "card", "aria-label": title }, h("h2", {}, title), children);
const row = (label, value) => [h("dt", {}, label), h("dd", {}, value)];

function summary(status) {
  const engine = status.engine || {};
  const cloning = status.cloning || {};
  return card("Status",
    h("p", {}, badge(status.status?.code, status.status?.message), " ", status.status?.message),
    h("dl", {},
      row("Version", `${engine.version || "—"} (${engine.edition || ""})`),
      row("Started", time(engine.startedAt)),
      row("Clones", String(cloning.numClones ?? (cloning.clones || []).length)),
      row("Expected cloning time", cloning.expectedCloningTime !== undefined ? `${Number(cloning.expectedCloningTime).toFixed(2)} s` : "—")));
}

function pools(status) {
  return card("Pools", (status.pools || []).map((pool) => {
    const fs = pool.fileSystem || {};
    return h("div", { class: "pool" },
      h("h3", {}, pool.name, " ", badge(pool.status)),
      bar(fs.used, fs.size, `Pool ${pool.name} used`),
      h("p", { class: "muted" }, `${bytes(fs.used)} used of ${bytes(fs.size)}, ${bytes(fs.free)} free · snapshots ${bytes(fs.usedBySnapshots)} · clones ${bytes(fs.usedByClones)} · data ${bytes(fs.dataSize)} · ${fs.mode || pool.mode}`),
      h("p", { class: "muted" }, "Data state at ", time(pool.dataStateAt), ` · ${(pool.cloneList || []).length} clones`));
  }));
}

function progressOf(progress) {
  if (!progress) return null;
  const counted = progress.bytesTotal
    ? `${bytes(progress.bytesDone)} of ${bytes(progress.bytesTotal)}`
    : progress.bytesDone ? `${bytes(progress.bytesDone)} done` : null;
  return h("div", { class: "progress", "data-stage": progress.stage },
    h("p", {}, h("strong", {}, `Stage: ${progress.stage}`), progress.database ? ` · database ${progress.database}` : "",
      progress.startedAt ? [" · started ", time(progress.startedAt)] : ""),
    progress.bytesTotal ? bar(progress.bytesDone, progress.bytesTotal, `Retrieval progress, stage ${progress.stage}`, { full: "good" }) : null,
    h("dl", {},
      counted ? row("Bytes", counted) : null,
      progress.tablesTotal || progress.tablesDone ? row("Tables", progress.tablesTotal ? `${progress.tablesDone} of ${progress.tablesTotal}` : String(progress.tablesDone)) : null,
      progress.bytesPerSecond ? row("Rate", `${bytes(progress.bytesPerSecond)}/s`) : null,
      progress.etaSeconds != null && !["finished", "failed"].includes(progress.stage) ? row("Time left", `about ${duration(progress.etaSeconds)}`) : null),
    (progress.databases || []).length
      ? h("ul", { class: "plain", "aria-label": "Databases of the last run" }, progress.databases.map((d) =>
        h("li", {}, h("code", {}, d.name), ` ${bytes(d.bytes)} · ${d.tables} tables`)))
      : null,
    progress.error ? h("p", { class: "note error" }, progress.error) : null);
}

function retrieval(live) {
  const alerts = Object.entries(live.alerts || {});
  const window = live.walWindow;
  const warnings = live.warnings;
  return card("Retrieval",
    h("p", {}, badge(live.status), ` ${live.mode || ""} mode`),
    progressOf(live.progress),
    h("dl", {},
      h("dt", {}, "Latest refresh"), h("dd", { "data-field": "latest-refresh" }, time(live.lastRefresh)),
      row("Next refresh", live.nextRefresh ? time(live.nextRefresh) : "none scheduled"),
      window ? row("Points in time", [time(window.oldest.at), ` (${window.oldest.lsn}) to `, time(window.newest.at), ` (${window.newest.lsn})`]) : null),
    warnings && warnings.count
      ? h("details", { "data-keep": "warnings" }, h("summary", {}, `${warnings.count} warning${warnings.count === 1 ? "" : "s"} from the refresh that made the current data`),
        h("ul", {}, (warnings.first || []).map((line) => h("li", {}, h("code", { class: "wrap" }, line)))))
      : null,
    alerts.length
      ? h("ul", { class: "alerts", "aria-label": "Alerts" }, alerts.map(([type, alert]) =>
        h("li", { class: `alert ${alert.level}` }, h("strong", {}, type), ` (${alert.level}, ×${alert.count}): ${alert.message} `, time(alert.lastSeen))))
      : h("p", { class: "muted" }, "No alerts."),
    live.activity ? activity(live.activity) : null);
}

function activity(live) {
  const rows = [...(live.source || []).map((a) => ["source", a]), ...(live.target || []).map((a) => ["target", a])];
  if (!rows.length) return null;
  return h("details", { "data-keep": "activity" }, h("summary", {}, `${rows.length} active queries`),
    h("ul", { class: "plain" }, rows.map(([where, a]) => h("li", {}, `${where} · ${a.user} · ${Number(a.duration || 0).toFixed(1)} s `, h("code", { class: "wrap" }, a.query)))));
}

function sync(synchronization) {
  if (!synchronization) return null;
  return card("Sync instance",
    h("p", {}, badge(synchronization.status?.code), " ", synchronization.status?.message),
    h("dl", {},
      row("Replication lag", synchronization.replicationLag !== undefined ? `${synchronization.replicationLag} s` : "—"),
      row("Last replayed", time(synchronization.lastReplayedLsnAt)),
      row("LSN", synchronization.lastReplayedLsn || "—")));
}

const sample = (families, name, labels = {}) =>
  (families.get(name) || []).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

function warm(pool, families) {
  const hits = sample(families, "scion_warm_pool_hits_total");
  const misses = sample(families, "scion_warm_pool_misses_total");
  const failures = sample(families, "scion_warm_pool_failures_total");
  if (!pool.target && !pool.ready) {
    return card("Warm pool", h("p", { class: "muted" }, "Off: no clones are started ahead of demand ([cloning] warm_pool_size = 0)."));
  }
  return card("Warm pool",
    h("p", {}, `${pool.ready} of ${pool.target} warm clone${pool.target === 1 ? "" : "s"} ready`, pool.making ? " · starting one now" : ""),
    bar(pool.ready, pool.target, "Warm pool fill", { full: "good" }),
    pool.snapshots.length
      ? h("ul", { class: "plain", "aria-label": "Warm clones per snapshot" }, pool.snapshots.map((s) =>
        h("li", { "data-snapshot": s.snapshotID }, h("code", { class: "wrap" }, s.snapshotID), `: ${s.ready} ready`)))
      : h("p", { class: "muted" }, "None ready yet."),
    h("p", { class: "muted" }, `${hits} creates served warm, ${misses} cold, ${failures} failures to start one.`));
}

function reconciliation(report) {
  if (!report) return card("Reconciliation", h("p", { class: "muted" }, "No report yet."));
  const differences = report.differences || [];
  const kinds = new Map();
  for (const d of differences) kinds.set(d.kind, [...(kinds.get(d.kind) || []), d]);
  return card("Reconciliation",
    h("p", { class: "muted" }, "The engine's last start compared its records with the pool and the running servers, ", time(report.checkedAt), "."),
    differences.length
      ? [...kinds].map(([kind, list]) => h("div", { class: "group" },
        h("h3", {}, `${kind} (${list.length})`),
        h("p", { class: "muted" }, DIFFERENCES[kind] || ""),
        h("ul", { class: "plain", "aria-label": `Differences: ${kind}` }, list.map((d) => h("li", {}, h("code", { class: "wrap" }, d.object), `: ${d.detail}`)))))
      : h("p", {}, "The store, the pool and the running servers agree."));
}

function webhooks(deliveries, families) {
  const samples = families.get("scion_webhook_deliveries_total") || [];
  const delivered = sample(families, "scion_webhook_deliveries_total", { outcome: "delivered" });
  const failed = samples.filter((s) => s.labels.outcome !== "delivered").reduce((sum, s) => sum + s.value, 0);
  if (!samples.length && !deliveries.length) return card("Webhook deliveries", h("p", { class: "muted" }, "No webhooks are configured."));
  const failures = deliveries.filter((d) => d.outcome !== "delivered");
  return card("Webhook deliveries",
    h("p", {}, `${delivered} delivered, ${failed} failed or dropped since the engine started.`),
    failures.length
      ? h("ul", { class: "alerts", "aria-label": "Webhook failures" }, failures.map((d) => h("li", { class: "alert error" },
        h("strong", {}, d.event), ` for ${d.entityID} to ${d.hook}: ${d.outcome} after ${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`,
        d.lastStatus ? ` (HTTP ${d.lastStatus})` : "", d.lastError ? ` — ${d.lastError}` : "", " ", time(d.finishedAt))))
      : h("p", { class: "muted" }, "No failed or dropped deliveries among the latest."),
    deliveries.length
      ? h("details", { "data-keep": "deliveries" }, h("summary", {}, `The latest ${deliveries.length} deliveries`),
        h("ul", { class: "plain" }, deliveries.map((d) => h("li", {}, badge(d.outcome), ` ${d.event} · ${d.entityID} · ${d.hook} · `, time(d.emittedAt)))))
      : null);
}
