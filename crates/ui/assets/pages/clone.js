// One clone: its status while it is made or reset, the connection strings to copy once it is
// ready, reset, protection, commit, stop and start (scale to zero), destroy, its size, limits
// and usage, its observation sessions and its log's tail.
import { ApiError, call, del, get, patch, post, seg } from "../api.js";
import { action, confirmDialog, copyText, every, field, fill, h, showInfo } from "../dom.js";
import { badge, bytes, connections, duration, time } from "../format.js";
import { go } from "../app.js";
import { observation } from "./observation.js";

// The password typed at create time, kept in this tab's memory only, so the strings to copy
// can carry it once; the API never sends it back.
const passwords = new Map();
export const remember = (id, password) => passwords.set(id, password);

const BUSY = new Set(["CREATING", "RESETTING", "DELETING", "EXPORTING"]);

export async function render(main, [id]) {
  const head = h("div", { class: "heading" });
  const state = h("section", { class: "card", "aria-label": "Status", "aria-live": "polite" });
  const connect = h("section", { class: "card", "aria-label": "Connect" });
  const details = h("section", { class: "card", "aria-label": "Details" });
  const controls = h("section", { class: "card", "aria-label": "Actions" });
  const observe = h("section", { class: "card", "aria-label": "Observation" });
  const log = h("pre", { class: "log", tabindex: 0, "aria-label": "Log tail" });
  main.append(head, h("div", { class: "grid" }, state, connect, details, controls, observe),
    h("section", { class: "card wide", "aria-label": "Log" }, h("h2", {}, "Log (last 50 lines)"), log));
  fill(head, h("h1", {}, "Clone ", h("code", {}, id)), h("a", { class: "button", href: "#/clones" }, "All clones"));
  const snapshots = await get("/snapshots");
  let shownCode = null;
  let shownOffer = null;
  let gone = false;
  const observer = observation(id, observe);

  const stop = every(1500, async () => {
    if (gone) return;
    let clone;
    try {
      clone = await get(`/clone/${seg(id)}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        gone = true;
        fill(state, h("h2", {}, "Status"), h("p", {}, "This clone does not exist (any more)."));
        for (const section of [connect, details, controls, observe]) fill(section);
        return;
      }
      throw error;
    }
    const code = clone.status?.code;
    const stopped = code === "OK" && Boolean(clone.stoppedAt);
    fill(state, h("h2", {}, "Status"),
      h("p", {}, badge(code, clone.status?.message), " ", clone.status?.message || ""),
      code === "OK" ? h("p", { "data-field": "power" }, stopped
        ? [badge("stopped"), " Its server is stopped (scaled to zero) since ", time(clone.stoppedAt), "; the first connection to its port starts it."]
        : [badge("running", "Its server runs"), " Its server is running."]) : null,
      BUSY.has(code) ? h("div", { class: "bar indeterminate", role: "progressbar", "aria-label": `${code.toLowerCase()}` }, h("span", { class: "fill" })) : null);
    fill(details, h("h2", {}, "Details"), h("dl", {},
      h("dt", {}, "Branch"), h("dd", {}, clone.branch || "—"),
      h("dt", {}, "Snapshot"), h("dd", {}, h("code", { class: "wrap" }, clone.snapshot?.id || "—")),
      h("dt", {}, "Revision"), h("dd", {}, `r${clone.revision ?? 0}`),
      h("dt", {}, "Protected"), h("dd", { "data-field": "protected" }, clone.protected ? (clone.protectedTill ? ["yes, till ", time(clone.protectedTill)] : "yes, with no end") : "no"),
      h("dt", {}, "Size"), h("dd", {}, `${bytes(clone.metadata?.cloneDiffSize)} written, ${bytes(clone.metadata?.logicalSize)} logical`),
      h("dt", {}, "Cloning time"), h("dd", {}, clone.metadata?.cloningTime !== undefined ? `${Number(clone.metadata.cloningTime).toFixed(3)} s` : "—"),
      h("dt", {}, "Idle deletion"), h("dd", {}, clone.metadata?.maxIdleMinutes ? `after ${clone.metadata.maxIdleMinutes} min idle` : "never"),
      h("dt", {}, "Limits"), h("dd", { "data-field": "limits" }, limits(clone.limits)),
      clone.usage ? [h("dt", {}, "Usage"), h("dd", {}, usage(clone.usage))] : null,
      h("dt", {}, "Created"), h("dd", {}, time(clone.createdAt)),
      h("dt", {}, "Deletes at"), h("dd", {}, time(clone.deleteAt))));
    if (code === "OK" && shownCode !== "OK") {
      const strings = connections(clone.db || {}, passwords.get(id));
      fill(connect, h("h2", {}, "Connect"),
        passwords.has(id) ? null : h("p", { class: "muted" }, "The password is the one given when the clone was made; the server does not keep it."),
        strings.map((s) => h("div", { class: "conn" },
          h("span", { class: "conn-label" }, s.label),
          h("code", { class: "wrap", "data-conn": s.label }, s.text),
          h("button", { type: "button", "aria-label": `Copy the ${s.label} connection string`, onclick: () => copyText(s.text, `The ${s.label} string`) }, "Copy"))));
    } else if (code !== "OK") fill(connect, h("h2", {}, "Connect"), h("p", { class: "muted" }, "Ready to connect once the status is OK."));
    // The controls are rebuilt only when what they offer changes, so typing is not lost.
    const offer = `${code}|${clone.protected}|${stopped}`;
    if (shownOffer !== offer) fill(controls, h("h2", {}, "Actions"), actions(clone, snapshots));
    shownOffer = offer;
    shownCode = code;
    await observer(code);
    log.textContent = await call("GET", `/clone/${seg(id)}/logs?tail=50`).catch((error) => `(${error.message})`);
  });
  return stop;
}

function actions(clone, snapshots) {
  const id = clone.id;
  const busy = BUSY.has(clone.status?.code);
  const target = h("select", { id: "reset-target" },
    h("option", { value: "" }, "The newest snapshot"),
    snapshots.map((s) => h("option", { value: s.id }, s.id)));
  const lease = h("input", { type: "number", id: "protect-lease", min: 0, placeholder: "server default" });
  const message = h("input", { id: "commit-message", placeholder: "what changed" });
  return [
    h("div", { class: "group" },
      field("Reset to", target, "Discards the clone's changes; its ID, port and credentials stay."),
      action("Reset", async () => {
        if (!(await confirmDialog("Reset clone", `Discard every change in ${id}?`, "Reset"))) return;
        await post(`/clone/${seg(id)}/reset`, target.value ? { snapshotID: target.value } : { latest: true });
        showInfo(`Resetting ${id}…`);
      }, { disabled: busy })),
    h("div", { class: "group" },
      clone.protected
        ? action("Remove protection", async () => {
          await patch(`/clone/${seg(id)}`, { protected: false });
          showInfo(`${id} is no longer protected.`);
        }, { disabled: busy })
        : [field("Protection lease (minutes)", lease, "0: until turned off; empty: the server's default."),
          action("Protect", async () => {
            const body = { protected: true };
            if (lease.value !== "") body.protectionDurationMinutes = Number(lease.value);
            await patch(`/clone/${seg(id)}`, body);
            showInfo(`${id} is protected.`);
          }, { disabled: busy })]),
    h("div", { class: "group" },
      field("Commit message", message, `Makes a snapshot of this clone, the new head of branch ${clone.branch || "main"}.`),
      action("Commit", async () => {
        const result = await post("/branch/snapshot", { cloneID: id, message: message.value });
        showInfo(`Committed as ${result.snapshotID}.`);
        message.value = "";
      }, { disabled: busy })),
    clone.status?.code === "OK" ? h("div", { class: "group" },
      clone.stoppedAt
        ? action("Start", async () => {
          await post(`/clone/${seg(id)}/start`);
          showInfo(`${id} is running again.`);
        })
        : action("Stop", async () => {
          await post(`/clone/${seg(id)}/stop`);
          showInfo(`${id} is stopped; a connection to its port starts it again.`);
        }, { "aria-describedby": "stop-hint" }),
      clone.stoppedAt ? null : h("small", { id: "stop-hint", class: "muted" }, " Frees its memory; its data, port and credentials stay.")) : null,
    h("div", { class: "group" },
      action("Destroy", async () => {
        if (!(await confirmDialog("Destroy clone", `Destroy ${id} and everything written to it?`, "Destroy"))) return;
        await del(`/clone/${seg(id)}`);
        go("/clones");
      }, { class: "danger", disabled: busy })),
  ];
}

function limits(limit) {
  if (!limit || (limit.cpu == null && limit.memory == null)) return "none";
  return [limit.cpu != null ? `${limit.cpu} CPU` : null, limit.memory != null ? `${bytes(limit.memory)} memory` : null].filter(Boolean).join(", ");
}

function usage(used) {
  return [
    used.cpuUsageMicros != null ? `CPU ${duration(used.cpuUsageMicros / 1e6)}` : null,
    used.cpuThrottledPeriods ? `held back in ${used.cpuThrottledPeriods} periods` : null,
    used.memory != null ? `memory ${bytes(used.memory)}${used.memoryPeak != null ? ` (peak ${bytes(used.memoryPeak)})` : ""}` : null,
    used.oomKills ? `${used.oomKills} killed for memory` : null,
  ].filter(Boolean).join(" · ") || "—";
}
