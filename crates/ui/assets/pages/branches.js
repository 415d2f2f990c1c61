// Branches: the history of every branch as one graph (commits, forks, clones on each), a
// branch created from any commit, and each branch's protection, scheduled deletion and delete
// with DBLab's refusals shown in its words.
import { del, get, post, seg } from "../api.js";
import { action, confirmDialog, every, field, fill, h, showError, showInfo, sortableTable } from "../dom.js";
import { time } from "../format.js";
import { draw } from "../graph.js";
import { protection } from "./snapshots.js";

export function render(main) {
  let selected = null;
  let data = null;
  const picture = h("div", { class: "graph-wrap" });
  const panel = h("section", { class: "card", "aria-label": "Selected commit", "aria-live": "polite" });
  const list = sortableTable({
    caption: "Branches",
    filterLabel: "Filter branches",
    key: (b) => b.name,
    rows: [],
    columns: [
      { label: "Branch", value: (b) => b.name, cell: (b) => h("strong", {}, b.name) },
      { label: "Parent", value: (b) => b.parent, cell: (b) => b.parent || "—" },
      { label: "Head", value: (b) => b.snapshotID, cell: (b) => h("code", { class: "wrap" }, b.snapshotID) },
      { label: "Commits", value: (b) => b.numSnapshots, cell: (b) => String(b.numSnapshots ?? 0) },
      { label: "Data state at", value: (b) => b.dataStateAt, cell: (b) => time(b.dataStateAt) },
      { label: "Protection", value: (b) => (b.protected ? 1 : 0), cell: (b) => protection(b, () => load(), `/branch/${seg(b.name)}`) },
      { label: "Delete", value: () => 0, cell: (b) => action("Delete", async () => {
        if (!(await confirmDialog("Delete branch", `Delete branch ${b.name} and its snapshots?`, "Delete"))) return;
        await del(`/branch/${seg(b.name)}`);
        showInfo(`Deleted branch ${b.name}.`);
        await load();
      }, { class: "danger small", "aria-label": `Delete branch ${b.name}` }) },
    ],
  });
  main.append(h("h1", {}, "Branches"),
    h("div", { class: "split" }, h("section", { class: "card", "aria-label": "History" }, h("h2", {}, "History"), picture), panel),
    list.element);

  const onSelect = (id) => {
    selected = id;
    show();
    picture.querySelector(`[data-id="${CSS.escape(id)}"]`)?.focus();
  };

  function show() {
    fill(picture, draw(data.commits, data.branches, { selected, onSelect }));
    fill(panel, details());
  }

  function details() {
    if (!selected || !data.commits.has(selected)) return [h("h2", {}, "Commit"), h("p", { class: "muted" }, "Choose a commit in the graph (click, or Tab and Enter) to see it and fork a branch from it.")];
    const commit = data.commits.get(selected);
    const name = h("input", { id: "branch-name", required: true, pattern: "[a-zA-Z0-9][a-zA-Z0-9_.\\-]*", autocomplete: "off" });
    const form = h("form", {}, field("New branch name", name, "Forks from this commit."),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create branch")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await post("/branch", { branchName: name.value.trim(), snapshotID: selected });
        showInfo(`Created branch ${name.value.trim()}.`);
        await load();
      } catch (error) {
        showError(error, "Create branch");
      }
    });
    return [h("h2", {}, "Commit"), h("dl", {},
      h("dt", {}, "ID"), h("dd", {}, h("code", { class: "wrap" }, selected)),
      h("dt", {}, "Message"), h("dd", {}, commit.message || "—"),
      h("dt", {}, "Data state at"), h("dd", {}, time(commit.dataStateAt)),
      h("dt", {}, "Parent"), h("dd", {}, commit.parent ? h("code", { class: "wrap" }, commit.parent) : "—"),
      h("dt", {}, "Clones"), h("dd", {}, commit.clones.length ? commit.clones.map((id) => h("a", { href: `#/clone/${encodeURIComponent(id)}`, class: "chip" }, id)) : "none")),
    form];
  }

  async function load() {
    const [branches, clones] = await Promise.all([get("/branches"), get("/clones")]);
    const logs = await Promise.all(branches.map((b) => get(`/branch/${seg(b.name)}/log`).catch(() => [])));
    // The log's own `clones` names datasets made from a commit (a branch's too); the clones a
    // person made are those whose snapshot is the commit.
    const clonesOn = new Map();
    for (const clone of clones) {
      const on = clone.snapshot?.id;
      if (on) clonesOn.set(on, [...(clonesOn.get(on) || []), clone.id]);
    }
    const commits = new Map();
    for (const log of logs) {
      for (const entry of log) {
        if (!commits.has(entry.id)) commits.set(entry.id, { id: entry.id, parent: entry.parent || null, message: entry.message, dataStateAt: entry.dataStateAt, clones: clonesOn.get(entry.id) || [] });
      }
    }
    // main first, then branches by their fork order, so older lines keep the left lanes.
    const ordered = branches.slice().sort((a, b) => (a.name === "main" ? -1 : b.name === "main" ? 1 : String(a.dataStateAt).localeCompare(String(b.dataStateAt)) || a.name.localeCompare(b.name)));
    const lines = ordered.map((b) => ({ name: b.name, head: b.snapshotID, log: (logs[branches.indexOf(b)] || []).map((e) => e.id) }));
    const fingerprint = JSON.stringify([...commits.values(), lines]);
    list.update(branches);
    if (data && data.fingerprint === fingerprint) return;
    data = { commits, branches: lines, fingerprint };
    // A redraw would take the focus from a field of the panel: keep the panel while someone types.
    if (panel.contains(document.activeElement) && document.activeElement.matches("input")) {
      fill(picture, draw(data.commits, data.branches, { selected, onSelect }));
      return;
    }
    show();
  }
  return every(4000, load);
}
