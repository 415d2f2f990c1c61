// The instance: status, pool usage, retrieval with live progress, refreshes, alerts,
// reconciliation differences, the warm pool and webhook delivery failures. Refreshes itself.
import { get, metrics } from "../api.js";
import { every, fill, h } from "../dom.js";
import { badge, bar, bytes, sizeBars, time } from "../format.js";

export function render(main) {
  const body = h("div", { class: "grid" });
  main.append(h("h1", {}, "Instance"), body);
  return every(3000, async () => {
    const [status, families] = await Promise.all([get("/status"), metrics().catch(() => new Map())]);
    fill(body, summary(status), pools(status), retrieval(status.retrieving || {}), sync(status.synchronization),
      warm(families), reconciliation(status.reconciliation), webhooks(families));
    sizeBars(body);
  });
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

function retrieval(retrieving) {
  const progress = retrieving.progress;
  const alerts = Object.entries(retrieving.alerts || {});
  return card("Retrieval",
    h("p", {}, badge(retrieving.status), ` ${retrieving.mode || ""} mode`),
    progress ? h("div", { class: "progress" },
      h("p", {}, `Stage: ${progress.stage}${progress.database ? ` · ${progress.database}` : ""}`),
      progress.bytesTotal ? bar(progress.bytesDone, progress.bytesTotal, "Retrieval progress") : null,
      h("p", { class: "muted" }, [
        progress.bytesTotal ? `${bytes(progress.bytesDone)} of ${bytes(progress.bytesTotal)}` : `${bytes(progress.bytesDone)} done`,
        progress.tablesTotal ? ` · ${progress.tablesDone} of ${progress.tablesTotal} tables` : "",
        progress.bytesPerSecond ? ` · ${bytes(progress.bytesPerSecond)}/s` : "",
        progress.etaSeconds ? ` · about ${Math.ceil(progress.etaSeconds / 60)} min left` : "",
      ].join("")),
      progress.error ? h("p", { class: "note error" }, progress.error) : null) : null,
    h("dl", {}, row("Last refresh", time(retrieving.lastRefresh)), row("Next refresh", time(retrieving.nextRefresh))),
    alerts.length
      ? h("ul", { class: "alerts", "aria-label": "Alerts" }, alerts.map(([type, alert]) =>
        h("li", { class: `alert ${alert.level}` }, h("strong", {}, type), ` (${alert.level}, ×${alert.count}): ${alert.message} `, time(alert.lastSeen))))
      : h("p", { class: "muted" }, "No alerts."));
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

function warm(families) {
  if (!families.size) return null;
  const ready = sample(families, "scion_warm_pool_clones");
  const hits = sample(families, "scion_warm_pool_hits_total");
  const misses = sample(families, "scion_warm_pool_misses_total");
  const failures = sample(families, "scion_warm_pool_failures_total");
  return card("Warm pool",
    h("p", {}, `${ready} warm clone${ready === 1 ? "" : "s"} ready to be claimed`),
    h("p", { class: "muted" }, `${hits} creates served warm, ${misses} cold, ${failures} failures to start one.`));
}

function reconciliation(report) {
  if (!report) return card("Reconciliation", h("p", { class: "muted" }, "No report yet."));
  const differences = report.differences || [];
  return card("Reconciliation",
    h("p", { class: "muted" }, "Checked ", time(report.checkedAt)),
    differences.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "Object"), h("th", { scope: "col" }, "Detail"))),
        h("tbody", {}, differences.map((d) => h("tr", {}, h("td", {}, d.kind), h("td", {}, h("code", {}, d.object)), h("td", {}, d.detail)))))
      : h("p", {}, "The store, the pool and the running servers agree."));
}

function webhooks(families) {
  const samples = families.get("scion_webhook_deliveries_total") || [];
  if (!samples.length) return null;
  const failed = samples.filter((s) => (s.labels.outcome === "failed" || s.labels.outcome === "dropped") && s.value > 0);
  const delivered = sample(families, "scion_webhook_deliveries_total", { outcome: "delivered" });
  return card("Webhook deliveries",
    h("p", {}, `${delivered} delivered since start.`),
    failed.length
      ? h("ul", { class: "alerts", "aria-label": "Webhook failures" }, failed.map((s) => h("li", { class: "alert warning" }, `${s.labels.event}: ${s.value} ${s.labels.outcome}`)))
      : h("p", { class: "muted" }, "No failed or dropped deliveries."));
}
