// Snapshots: a new one now or (physical mode) at a point in time of the WAL window, the list,
// protection and scheduled deletion, and delete with the API's refusals shown in its words.
import { del, get, patch, post, seg } from "../api.js";
import { action, confirmDialog, every, field, fill, h, showError, showInfo, sortableTable } from "../dom.js";
import { bytes, time } from "../format.js";

const stamp = (value) => (value ? new Date(value).getTime() || 0 : 0);

export function render(main) {
  let refresh = async () => {};
  const table = sortableTable({
    caption: "Snapshots",
    filterLabel: "Filter snapshots",
    key: (s) => s.id,
    rows: [],
    columns: [
      { label: "ID", value: (s) => s.id, cell: (s) => [h("code", { class: "wrap" }, s.id), s.masked ? [" ", h("span", { class: "badge ok", title: "The data was masked before the snapshot" }, "masked")] : null] },
      { label: "Branch", value: (s) => s.branch, cell: (s) => s.branch || "—" },
      { label: "Data state at", value: (s) => stamp(s.dataStateAt), cell: (s) => time(s.dataStateAt) },
      { label: "Clones", value: (s) => s.numClones ?? 0, cell: (s) => String(s.numClones ?? 0) },
      { label: "Size", value: (s) => s.physicalSize ?? 0, cell: (s) => `${bytes(s.physicalSize)} (${bytes(s.logicalSize)} logical)` },
      { label: "Message", value: (s) => s.message, cell: (s) => s.message || "" },
      { label: "Protection", value: (s) => (s.protected ? 1 : 0), cell: (s) => protection(s, () => refresh()) },
      { label: "Delete", value: () => 0, cell: (s) => action("Delete", async () => {
        if (!(await confirmDialog("Delete snapshot", `Delete ${s.id}?`, "Delete"))) return;
        await del(`/snapshot/${seg(s.id)}`);
        showInfo(`Deleted ${s.id}.`);
        await refresh();
      }, { class: "danger small", "aria-label": `Delete ${s.id}` }) },
    ],
  });
  const creator = h("section", { class: "card", "aria-label": "New snapshot" });
  refresh = async () => table.update(await get("/snapshots"));
  main.append(h("h1", {}, "Snapshots"), creator, table.element);
  let shownWindow = null;
  return every(5000, async () => {
    const [retrieving] = await Promise.all([get("/instance/retrieval"), refresh()]);
    // The form is drawn again only when what it offers changes, so typing is never lost.
    const offer = JSON.stringify([retrieving.mode, retrieving.walWindow]);
    if (offer !== shownWindow) {
      shownWindow = offer;
      fill(creator, newSnapshot(retrieving, refresh));
    }
  });
}

// RFC 3339 in UTC from a datetime-local value (the browser's zone).
const utc = (local) => new Date(local).toISOString();
// A Date as a datetime-local value in the browser's zone, to the second.
const localInput = (value) => {
  const date = new Date(value);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
};

function newSnapshot(retrieving, after) {
  const window = retrieving.walWindow;
  const physical = retrieving.mode === "physical";
  const title = h("h2", {}, "New snapshot");
  const making = h("div", { class: "bar indeterminate", role: "progressbar", "aria-label": "Making the snapshot", hidden: true }, h("span", { class: "fill" }));
  const run = async (body, what) => {
    making.hidden = false;
    try {
      const snapshot = await post("/snapshot", body);
      showInfo(`Created snapshot ${snapshot.id}${what}.`);
      await after();
    } finally {
      making.hidden = true;
    }
  };
  const now = action("Snapshot now", () => run({}, ""), { class: "primary" });
  if (!physical || !window) {
    const why = !physical
      ? `Points in time need physical mode: this instance runs in ${retrieving.mode} mode, whose data changes only at each refresh, so there is no WAL to replay.`
      : "No point in time can be reached yet: the WAL window opens once a snapshot has kept its standby copy.";
    return [title, h("p", { class: "muted", id: "pitr-why" }, why), h("div", { class: "actions" }, now), making];
  }
  const choice = (value, label, checked) => h("label", {}, h("input", { type: "radio", name: "pitr-kind", value, checked }), label);
  const at = h("input", { type: "datetime-local", id: "pitr-time", step: 1, min: localInput(window.oldest.at), max: localInput(window.newest.at), value: localInput(window.newest.at) });
  const lsn = h("input", { id: "pitr-lsn", placeholder: window.newest.lsn, pattern: "[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", autocomplete: "off", spellcheck: "false" });
  const kinds = h("fieldset", {}, h("legend", {}, "Moment"),
    h("div", { class: "choices" }, choice("now", "Now", true), choice("time", "At a time", false), choice("lsn", "At a WAL location (LSN)", false)));
  const create = h("button", { type: "submit", class: "primary" }, "Create snapshot");
  const form = h("form", { "aria-label": "Snapshot at a point in time" },
    h("p", {}, "The WAL window reaches back to ", time(window.oldest.at), " (", h("code", {}, window.oldest.lsn), ") and forward to ", time(window.newest.at), " (", h("code", { id: "wal-newest-lsn" }, window.newest.lsn), ")."),
    kinds,
    h("div", { class: "form-grid" },
      field("Time", at, "The last commit at or before it, in this browser's time zone."),
      field("LSN", lsn, "Replays up to and including the record at or after it, e.g. 0/3000148.")),
    h("div", { class: "actions" }, create), making);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (create.disabled) return;
    const kind = form.querySelector("input[name=pitr-kind]:checked")?.value;
    create.disabled = true;
    create.setAttribute("aria-busy", "true");
    try {
      if (kind === "time") {
        if (!at.value) throw new Error("Choose a time first.");
        await run({ recoveryTarget: { time: utc(at.value) } }, ` at ${new Date(at.value).toLocaleString()}`);
      } else if (kind === "lsn") {
        if (!lsn.value.trim()) throw new Error("Write a WAL location first, e.g. " + window.newest.lsn + ".");
        await run({ recoveryTarget: { lsn: lsn.value.trim() } }, ` at ${lsn.value.trim()}`);
      } else await run({}, "");
    } catch (error) {
      showError(error, "Create snapshot");
    } finally {
      create.disabled = false;
      create.removeAttribute("aria-busy");
    }
  });
  return [title, form];
}

// Protect, unprotect, or schedule a deletion of a snapshot or branch through PATCH.
export function protection(item, after, path = `/snapshot/${seg(item.id)}`) {
  const name = item.id || item.name;
  const when = h("input", { type: "datetime-local", "aria-label": `Delete ${name} at` });
  return h("div", { class: "stack" },
    item.protected ? ["protected", item.protectedTill ? [" till ", time(item.protectedTill)] : ""] : "",
    item.deleteAt ? ["deletes ", time(item.deleteAt)] : "",
    action(item.protected ? "Unprotect" : "Protect", async () => {
      await patch(path, { protected: !item.protected });
      await after();
    }, { class: "small", "aria-label": `${item.protected ? "Unprotect" : "Protect"} ${name}` }),
    h("div", { class: "inline" }, when, action("Schedule deletion", async () => {
      if (!when.value) throw new Error("Choose a date and time first.");
      await patch(path, { deleteAt: new Date(when.value).toISOString() });
      await after();
    }, { class: "small", "aria-label": `Schedule the deletion of ${name}` })));
}
