// Building the page: elements from data (text is always set as text, never parsed as HTML),
// the notice line every error lands in, confirmations, and timers that stop with their page.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces what an element holds.
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

// Redraws `element` with `children` the way a page that redraws itself every few seconds must:
// the <details> a person opened stay open, and the keyboard focus stays where it was, both
// found again by the `data-keep` name of the element (or of the element around it).
export function redraw(element, ...children) {
  const open = new Set([...element.querySelectorAll("details[data-keep][open]")].map((d) => d.dataset.keep));
  const active = element.contains(document.activeElement) ? document.activeElement : null;
  const kept = active?.closest("[data-keep]");
  fill(element, ...children);
  for (const details of element.querySelectorAll("details[data-keep]")) {
    if (open.has(details.dataset.keep)) details.open = true;
  }
  if (!kept) return;
  let target = element.querySelector(`[data-keep="${CSS.escape(kept.dataset.keep)}"]`);
  if (target && active !== kept) target = target.querySelector(active.tagName.toLowerCase());
  target?.focus({ preventScroll: true });
}

const notice = () => document.getElementById("notice");

// Shows an error's message (the API's own words) until the next page or the next notice.
export function showError(error, doing) {
  const message = error && error.message ? error.message : String(error);
  fill(notice(), h("div", { class: "note error" }, doing ? `${doing}: ` : "", message,
    h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: clearNotice }, "×")));
}

export function showInfo(text) {
  fill(notice(), h("div", { class: "note info", role: "status" }, text,
    h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: clearNotice }, "×")));
}

export function clearNotice() {
  fill(notice());
}

// A modal question; resolves to true when confirmed. Escape and Cancel say no.
export function confirmDialog(title, text, action = "Confirm") {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title" },
      h("form", { method: "dialog" },
        h("h2", { id: "dialog-title" }, title),
        h("p", {}, text),
        h("div", { class: "actions" },
          h("button", { value: "cancel", type: "submit" }, "Cancel"),
          h("button", { value: "ok", type: "submit", class: "danger" }, action))));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Runs fn now and every `ms` while the page is shown and the tab visible; the page's cleanup
// (returned by the router's `onLeave`) stops it.
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch (error) {
        showError(error);
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// A button that runs an async action once at a time, showing that it is busy and any error.
export function action(label, run, attrs = {}) {
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await run(button);
    } catch (error) {
      showError(error, label);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
  return button;
}

// A table whose columns sort by click (and Enter/Space), with a filter box over its rows.
// columns: [{label, value(row) -> sortable, cell(row) -> node}]
export function sortableTable({ columns, rows, filterLabel, key, caption }) {
  let sortBy = 0;
  let ascending = true;
  let filter = "";
  const body = h("tbody");
  const heads = columns.map((column, index) => {
    const button = h("button", { type: "button", class: "sort" }, column.label);
    const th = h("th", { scope: "col", "aria-sort": index === 0 ? "ascending" : "none" }, button);
    button.addEventListener("click", () => {
      ascending = sortBy === index ? !ascending : true;
      sortBy = index;
      heads.forEach((other, i) => other.setAttribute("aria-sort", i === sortBy ? (ascending ? "ascending" : "descending") : "none"));
      render();
    });
    return th;
  });
  const input = h("input", { type: "search", placeholder: "Filter", "aria-label": filterLabel });
  input.addEventListener("input", () => {
    filter = input.value.trim().toLowerCase();
    render();
  });
  const count = h("span", { class: "muted", "aria-live": "polite" });
  function render() {
    const value = columns[sortBy].value;
    const shown = rows
      .filter((row) => !filter || columns.some((column) => String(column.value(row) ?? "").toLowerCase().includes(filter)))
      .sort((a, b) => {
        const x = value(a) ?? "";
        const y = value(b) ?? "";
        const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
    fill(body, shown.map((row) => h("tr", { "data-key": key(row) }, columns.map((column) => h("td", { "data-label": column.label }, h("div", {}, column.cell(row)))))));
    if (!shown.length) fill(body, h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, rows.length ? "Nothing matches the filter." : "None yet.")));
    count.textContent = `${shown.length} of ${rows.length}`;
  }
  render();
  const element = h("div", { class: "table" },
    h("div", { class: "toolbar" }, input, count),
    h("table", {}, caption ? h("caption", { class: "sr-only" }, caption) : null, h("thead", {}, h("tr", {}, heads)), body));
  return {
    element,
    update(next) {
      rows = next;
      // A refresh would drop what someone is typing into a row's field: wait for the next one.
      if (body.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")) return;
      render();
    },
  };
}

// A labelled form field.
export function field(label, control, hint) {
  const id = control.id || `f-${label.toLowerCase().replace(/\W+/g, "-")}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", { id: hintId, class: "muted" }, hint) : null);
}

export async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    showInfo(`${what} copied.`);
  } catch {
    showError(new Error("The browser refused the clipboard; select the text and copy it."));
  }
}
