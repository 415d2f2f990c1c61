"""The web UI end to end in a real headless Chromium (Debian's, driven by Playwright).

Run by crates/server/tests/it/ui.rs against a real scion-server:
    e2e.py URL TOKEN PSQL SCREENSHOT_DIR
Signs in (a wrong token first), creates a clone and connects to it with psql through the
copied connection string, resets it, protects it, sees the protected clone's destroy refused,
commits it, creates a branch from the commit in the history graph, and destroys the clone;
every page is shot at 1280x800 and at a phone's size, which must not scroll sideways. Any
browser console error or Content-Security-Policy violation fails the run.
"""

import shlex
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

URL, TOKEN, PSQL, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
CHROMIUM = "/usr/bin/chromium"
CLONE = "ui-clone"
WAIT_MS = 120_000

SHOTS.mkdir(parents=True, exist_ok=True)
problems = []


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def psql(connection, sql):
    """Runs psql as the copied command line says, with one statement; returns its output."""
    argv = shlex.split(connection)
    assert argv[0] == "psql", argv
    result = subprocess.run(
        [PSQL, *argv[1:], "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"psql failed: {result.stderr}"
    return result.stdout.strip()


def psql_or_none(connection, sql):
    """psql while the server restarts (a reset): None until it answers."""
    try:
        return psql(connection, sql)
    except AssertionError:
        return None


def until(what, check):
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def forgive_refusals():
    """Chromium logs every 4xx answer as a console error; those the test just caused on purpose
    (and checked on the page) are not problems."""
    problems[:] = [p for p in problems if "the server responded with a status of 4" not in p]


def confirm(page, button):
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button).click()


def no_sideways_scroll(page, where):
    width = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if width > 1:
        problems.append(f"{where} scrolls sideways by {width}px on a phone-sized screen")


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=URL)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    page.set_default_timeout(WAIT_MS)

    # Sign in: a wrong token gets a clear message and no way in; the right one opens the UI.
    page.goto(URL + "/")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    page.get_by_label("Verification token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong token")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    shot(page, "signin-wrong-token")
    # The 401 of a wrong token is the expected answer, not a page error.
    forgive_refusals()
    page.get_by_label("Verification token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Instance", exact=True)).to_be_visible()
    expect(page.get_by_role("region", name="Pools")).to_contain_text("used of")
    expect(page.get_by_role("region", name="Reconciliation")).to_be_visible()
    expect(page.get_by_role("region", name="Warm pool")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('scion.token')") == TOKEN
    shot(page, "instance")

    # Create a clone with a generated password.
    page.get_by_role("link", name="Clones", exact=True).click()
    page.get_by_role("link", name="New clone").click()
    page.get_by_label("Clone ID").fill(CLONE)
    page.get_by_label("Database user").fill("uitester")
    page.get_by_role("button", name="Generate").click()
    password = page.get_by_label("Password").input_value()
    assert len(password) >= 20, password
    expect(page.locator("#password-hint")).to_contain_text("bits")
    shot(page, "clone-create")
    page.get_by_role("button", name="Create clone").click()
    expect(page.get_by_role("heading", name=f"Clone {CLONE}", exact=True)).to_be_visible()
    psql_text = page.locator("code[data-conn='psql']")
    expect(psql_text).to_be_visible(timeout=WAIT_MS)
    page.get_by_role("button", name="Copy the psql connection string").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == psql_text.inner_text(), (copied, psql_text.inner_text())
    assert password in copied, "the copied string carries the password"
    psql(copied, "CREATE TABLE ui_written AS SELECT 42 AS answer")
    assert psql(copied, "SELECT answer FROM ui_written") == "42"
    shot(page, "clone")

    # Reset to the newest snapshot: the table written is gone, the credentials still work.
    page.get_by_label("Reset to").select_option("")
    page.get_by_role("button", name="Reset", exact=True).click()
    confirm(page, "Reset")
    until("the reset", lambda: psql_or_none(copied, "SELECT to_regclass('ui_written') IS NULL") == "t")
    expect(page.locator(".badge", has_text="OK").first).to_be_visible()

    # Protect it; its destroy is then refused, with the API's message on the page.
    page.get_by_role("button", name="Protect", exact=True).click()
    expect(page.locator("[data-field=protected]")).to_contain_text("yes")
    page.get_by_role("button", name="Destroy").click()
    confirm(page, "Destroy")
    refusal = page.locator("#notice .note.error")
    expect(refusal).to_contain_text("Destroy:")
    expect(refusal).to_contain_text("protect")
    shot(page, "clone-protected-destroy-refused")
    forgive_refusals()

    # Commit the clone, then fork a branch from that commit in the graph.
    psql(copied, "CREATE TABLE ui_committed AS SELECT 1 AS one")
    page.get_by_label("Commit message").fill("ui commit")
    page.get_by_role("button", name="Commit", exact=True).click()
    expect(page.locator("#notice")).to_contain_text("Committed as")
    page.get_by_role("link", name="Branches").click()
    node = page.locator("svg.graph [role=button]", has_text="ui commit")
    expect(node).to_be_visible()
    node.focus()
    page.keyboard.press("Enter")
    page.get_by_label("New branch name").fill("ui-branch")
    page.get_by_role("button", name="Create branch").click()
    expect(page.locator("#notice")).to_contain_text("Created branch ui-branch")
    expect(page.locator("tr[data-key='ui-branch']")).to_be_visible()
    expect(page.locator("svg.graph text", has_text="[ui-branch]")).to_be_visible()
    shot(page, "branches")
    # Deleting main is refused, in the API's words.
    page.get_by_role("button", name="Delete branch main").click()
    confirm(page, "Delete")
    expect(page.locator("#notice .note.error")).to_contain_text("main")
    forgive_refusals()

    page.get_by_role("link", name="Snapshots").click()
    expect(page.locator("tbody tr").first).to_be_visible()
    commit_row = page.locator("tr", has=page.locator("td", has_text="ui commit"))
    expect(commit_row).to_be_visible()
    commit_row.get_by_role("button", name="Protect").click()
    expect(commit_row).to_contain_text("protected")
    expect(commit_row.get_by_role("button", name="Unprotect")).to_be_visible()
    shot(page, "snapshots")

    page.get_by_role("link", name="Clones", exact=True).click()
    expect(page.locator(f"tr[data-key='{CLONE}']")).to_contain_text("yes")
    # Sorting works from the keyboard, and says so to screen readers.
    status_header = page.locator("th", has=page.get_by_role("button", name="Status"))
    page.get_by_role("button", name="Status").focus()
    page.keyboard.press("Enter")
    expect(status_header).to_have_attribute("aria-sort", "ascending")
    page.keyboard.press("Enter")
    expect(status_header).to_have_attribute("aria-sort", "descending")
    page.get_by_label("Filter clones").fill("no-such-clone")
    expect(page.get_by_text("Nothing matches the filter.")).to_be_visible()
    page.get_by_label("Filter clones").fill(CLONE)
    expect(page.locator(f"tr[data-key='{CLONE}']")).to_be_visible()
    shot(page, "clones")

    # A phone-sized screen: every page fits its width.
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path, heading in [("instance", "instance", "Instance"), ("clones", "clones", "Clones"),
                                ("clone", f"clone/{CLONE}", f"Clone {CLONE}"),
                                ("snapshots", "snapshots", "Snapshots"), ("branches", "branches", "Branches")]:
        page.goto(f"{URL}/#/{path}")
        expect(page.locator("main h1")).to_have_text(heading)
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, name)
        shot(page, f"phone-{name}")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Unprotect and destroy: the clone leaves the list.
    page.goto(f"{URL}/#/clone/{CLONE}")
    page.get_by_role("button", name="Remove protection").click()
    expect(page.locator("[data-field=protected]")).to_contain_text("no")
    page.get_by_role("button", name="Destroy").click()
    confirm(page, "Destroy")
    expect(page.get_by_role("heading", name="Clones", exact=True)).to_be_visible()
    expect(page.locator(f"tr[data-key='{CLONE}']")).to_have_count(0, timeout=WAIT_MS)

    # How fast the page is (reported, never asserted): a cold load in a fresh tab with the token
    # in its session, until the instance page is drawn, and the bytes the UI's files weigh.
    timing = browser.new_context(viewport={"width": 1280, "height": 800})
    timing.add_init_script(f"sessionStorage.setItem('scion.token', {TOKEN!r})")
    page = timing.new_page()
    for cache in ["cold", "warm"]:
        if cache == "cold":
            page.goto(f"{URL}/#/instance")
        else:
            page.reload()
        expect(page.locator("main h1")).to_have_text("Instance")
        expect(page.get_by_role("region", name="Pools")).to_contain_text("used of")
        drawn = page.evaluate("performance.now()")
        files = page.evaluate(
            "performance.getEntriesByType('resource').filter(r => r.name.includes('/ui/'))"
            ".map(r => [r.transferSize, r.decodedBodySize])"
        )
        shell = page.evaluate("performance.getEntriesByType('navigation')[0].decodedBodySize")
        print(f"ui page load ({cache} cache): instance page drawn {drawn:.0f} ms after navigation; "
              f"{len(files)} files, {sum(f[1] for f in files) + shell} bytes, "
              f"{sum(f[0] for f in files)} bytes transferred")

    browser.close()

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"ui e2e: passed; screenshots in {SHOTS}")
