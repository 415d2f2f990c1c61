// Snapshots: the list, protection and scheduled deletion, and delete with the API's refusals
// shown in its words.
import { del, get, patch, seg } from "../api.js";
import { action, confirmDialog, every, h, showInfo, sortableTable } from "../dom.js";
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
      { label: "ID", value: (s) => s.id, cell: (s) => h("code", { class: "wrap" }, s.id) },
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
  refresh = async () => table.update(await get("/snapshots"));
  main.append(h("h1", {}, "Snapshots"), table.element);
  return every(5000, refresh);
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
