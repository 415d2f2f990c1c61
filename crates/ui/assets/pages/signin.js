// Sign in: the token is checked against /status before it is kept (sessionStorage only).
import { ApiError, get, setToken } from "../api.js";
import { field, h, showError } from "../dom.js";
import { go, signIn } from "../app.js";

export function render(main) {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, autofocus: true });
  const problem = h("p", { class: "note error", role: "alert", hidden: true });
  if (sessionStorage.getItem("scion.refused")) {
    problem.textContent = "The server refused the token this tab had; sign in again.";
    problem.hidden = false;
    sessionStorage.removeItem("scion.refused");
  }
  const form = h("form", { class: "card narrow", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, "The engine's verification token (server.verification_token or SCION_VERIFICATION_TOKEN). It is kept in this tab only."),
    field("Verification token", input),
    problem,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Sign in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.hidden = true;
    setToken(input.value.trim());
    try {
      await get("/status");
      sessionStorage.removeItem("scion.refused");
      signIn();
      go("/instance");
    } catch (error) {
      setToken("");
      sessionStorage.removeItem("scion.refused");
      if (error instanceof ApiError && error.status === 401) {
        problem.textContent = `Wrong token: the server says "${error.message}"`;
        problem.hidden = false;
        input.select();
      } else showError(error, "Sign in");
    }
  });
  main.append(form);
}
