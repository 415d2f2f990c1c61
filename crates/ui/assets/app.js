// The shell: hash routes (so no path of the UI can shadow an API path), sign-in gating,
// and each page's render and cleanup.
import { get, setToken, token } from "./api.js";
import { clearNotice, fill, h, showError } from "./dom.js";

const ROUTES = [
  [/^\/signin$/, () => import("./pages/signin.js"), "Sign in"],
  [/^\/instance$/, () => import("./pages/instance.js"), "Instance"],
  [/^\/clones$/, () => import("./pages/clones.js"), "Clones"],
  [/^\/clones\/new$/, () => import("./pages/clones.js").then((m) => ({ render: m.renderCreate })), "New clone"],
  [/^\/clone\/(.+)$/, () => import("./pages/clone.js"), "Clone"],
  [/^\/snapshots$/, () => import("./pages/snapshots.js"), "Snapshots"],
  [/^\/branches$/, () => import("./pages/branches.js"), "Branches"],
  [/^\/config$/, () => import("./pages/config.js"), "Configuration"],
];

let leave = null;
let open = false; // whether the API lets this tab in (a token it took, or none needed)

export function go(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = path;
}

async function signedIn() {
  if (open) return true;
  try {
    await get("/status");
    open = true;
  } catch (error) {
    if (error.status !== 401) throw error;
  }
  return open;
}

async function route() {
  const main = document.getElementById("main");
  const path = decodeURIComponent(location.hash.replace(/^#/, "")) || "/instance";
  if (leave) leave();
  leave = null;
  clearNotice();
  try {
    if (path !== "/signin" && !(await signedIn())) return go("/signin");
    const found = ROUTES.find(([pattern]) => pattern.test(path)) || ROUTES[1];
    const [pattern, load, title] = found;
    const params = path.match(pattern)?.slice(1) ?? [];
    document.getElementById("nav").hidden = path === "/signin";
    for (const link of document.querySelectorAll("#nav a")) {
      const current = path.startsWith(link.getAttribute("href").slice(1).replace(/s$/, ""));
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = `${params[0] ? `${params[0]} · ` : ""}${title} · Scion`;
    const page = await load();
    fill(main);
    leave = (await page.render(main, params)) || null;
    main.focus({ preventScroll: true });
  } catch (error) {
    fill(main, h("h1", {}, "Something went wrong"), h("p", {}, error.message || String(error)));
    showError(error);
  }
}

// A token the API refuses (revoked, server restarted with another) sends the tab back to sign in.
window.addEventListener("scion:unauthorized", () => {
  open = false;
  // The sign-in page says so itself when it is the one trying a token.
  if (location.hash === "#/signin") return;
  const had = Boolean(token());
  setToken("");
  sessionStorage.setItem("scion.refused", had ? "1" : "");
  if (location.hash !== "#/signin") go("/signin");
});

export function signIn() {
  open = true;
}

document.getElementById("signout").addEventListener("click", () => {
  setToken("");
  open = false;
  go("/signin");
});

window.addEventListener("hashchange", route);
route();
