// The clone list (sortable, filterable, refreshing itself) and the create form.
import { get, post } from "../api.js";
import { every, field, h, showError, sortableTable } from "../dom.js";
import { badge, bytes, parseSettings, time } from "../format.js";
import { generate, hint } from "../password.js";
import { remember } from "./clone.js";
import { go } from "../app.js";

const stamp = (value) => (value ? new Date(value).getTime() || 0 : 0);

export function render(main) {
  const table = sortableTable({
    caption: "Clones",
    filterLabel: "Filter clones",
    key: (clone) => clone.id,
    rows: [],
    columns: [
      { label: "ID", value: (c) => c.id, cell: (c) => h("a", { href: `#/clone/${encodeURIComponent(c.id)}` }, c.id) },
      { label: "Status", value: (c) => `${c.status?.code}${c.stoppedAt ? " stopped" : ""}`, cell: (c) => [badge(c.status?.code, c.status?.message), c.stoppedAt ? [" ", badge("stopped", "Scaled to zero: the first connection starts it")] : null] },
      { label: "Branch", value: (c) => c.branch, cell: (c) => c.branch || "—" },
      { label: "Snapshot", value: (c) => c.snapshot?.id, cell: (c) => h("code", { class: "wrap" }, c.snapshot?.id || "—") },
      { label: "Port", value: (c) => Number(c.db?.port) || 0, cell: (c) => c.db?.port || "—" },
      { label: "Protected", value: (c) => (c.protected ? 1 : 0), cell: (c) => (c.protected ? (c.protectedTill ? ["yes, till ", time(c.protectedTill)] : "yes") : "no") },
      { label: "Diff size", value: (c) => c.metadata?.cloneDiffSize ?? 0, cell: (c) => bytes(c.metadata?.cloneDiffSize) },
      { label: "Created", value: (c) => stamp(c.createdAt), cell: (c) => time(c.createdAt) },
    ],
  });
  main.append(
    h("div", { class: "heading" }, h("h1", {}, "Clones"), h("a", { class: "button primary", href: "#/clones/new" }, "New clone")),
    table.element);
  return every(2000, async () => table.update(await get("/clones")));
}

export async function renderCreate(main) {
  const [branches, snapshots] = await Promise.all([get("/branches"), get("/snapshots")]);
  const source = h("select", { name: "source" },
    h("optgroup", { label: "Branch head" }, branches.map((b) => h("option", { value: `branch:${b.name}`, selected: b.name === "main" }, b.name))),
    h("optgroup", { label: "Snapshot" }, snapshots.map((s) => h("option", { value: `snapshot:${s.id}` }, `${s.id}${s.message ? ` — ${s.message}` : ""}`))));
  const id = h("input", { name: "id", pattern: "[a-zA-Z0-9][a-zA-Z0-9_.\\-]*", placeholder: "generated when empty", autocomplete: "off" });
  const user = h("input", { name: "username", required: true, maxlength: 63, autocomplete: "off" });
  const password = h("input", { name: "password", type: "text", required: true, maxlength: 1024, autocomplete: "new-password", spellcheck: "false" });
  const passwordHint = h("small", { id: "password-hint", class: "muted", "aria-live": "polite" }, hint(""));
  password.setAttribute("aria-describedby", "password-hint");
  password.id = "f-password";
  password.addEventListener("input", () => (passwordHint.textContent = hint(password.value)));
  const generator = h("button", { type: "button" }, "Generate");
  generator.addEventListener("click", () => {
    password.value = generate();
    passwordHint.textContent = hint(password.value);
  });
  const dbName = h("input", { name: "db_name", maxlength: 63, placeholder: "the snapshot's default", autocomplete: "off" });
  const protect = h("input", { type: "checkbox", name: "protected" });
  const lease = h("input", { type: "number", name: "lease", min: 0, placeholder: "server default", disabled: true });
  protect.addEventListener("change", () => (lease.disabled = !protect.checked));
  const cpu = h("input", { type: "number", name: "cpu", min: 0.01, step: 0.01, placeholder: "server default", inputmode: "decimal" });
  const memory = h("input", { type: "number", name: "memory", min: 16, step: 1, placeholder: "server default" });
  const extra = h("textarea", { name: "extra_conf", rows: 3, placeholder: "work_mem = 64MB", spellcheck: "false" });
  const submit = h("button", { type: "submit", class: "primary" }, "Create clone");
  const form = h("form", { class: "card", "aria-labelledby": "create-title" },
    h("h1", { id: "create-title" }, "New clone"),
    field("From", source, "A branch's newest snapshot, or a chosen snapshot."),
    field("Clone ID", id),
    field("Database user", user),
    h("div", { class: "field" }, h("label", { for: "f-password" }, "Password"), h("div", { class: "inline" }, password, generator), passwordHint),
    field("Database", dbName),
    h("div", { class: "field checkbox" }, protect, h("label", { for: "f-protect" }, "Protect from deletion")),
    field("Protection lease (minutes)", lease, "0 keeps it protected until you turn protection off; empty uses the server's default."),
    h("div", { class: "form-grid" },
      field("CPU limit (cores)", cpu, "e.g. 1.5; empty: the server's [clone] cpu."),
      field("Memory limit (MiB)", memory, "At least 16; empty: the server's [clone] memory.")),
    field("Extra settings", extra, "postgresql.conf lines for this clone, one name = value per line."),
    h("div", { class: "actions" }, submit, h("a", { class: "button", href: "#/clones" }, "Cancel")));
  protect.id = "f-protect";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      const [kind, value] = [source.value.slice(0, source.value.indexOf(":")), source.value.slice(source.value.indexOf(":") + 1)];
      const request = { db: { username: user.value.trim(), password: password.value } };
      if (id.value.trim()) request.id = id.value.trim();
      if (kind === "branch") request.branch = value;
      else request.snapshot = { id: value };
      if (dbName.value.trim()) request.db.db_name = dbName.value.trim();
      if (protect.checked) {
        request.protected = true;
        if (lease.value !== "") request.protectionDurationMinutes = Number(lease.value);
      }
      const limits = {};
      if (cpu.value !== "") limits.cpu = Number(cpu.value);
      if (memory.value !== "") limits.memory = Math.round(Number(memory.value) * 1024 * 1024);
      if (Object.keys(limits).length) request.limits = limits;
      const settings = parseSettings(extra.value, "Extra settings");
      if (Object.keys(settings).length) request.extra_conf = settings;
      const clone = await post("/clone", request);
      remember(clone.id, password.value);
      go(`/clone/${clone.id}`);
    } catch (error) {
      showError(error, "Create clone");
    } finally {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
    }
  });
  main.append(form);
  user.focus();
}
