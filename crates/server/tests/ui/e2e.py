"""The web UI end to end in a real headless Chromium (Debian's, driven by Playwright).

Run by crates/server/tests/it/ui.rs against a real scion-server:
    e2e.py URL TOKEN PSQL SCREENSHOT_DIR daily
    e2e.py URL TOKEN PSQL SCREENSHOT_DIR physical LSN
    e2e.py URL TOKEN PSQL SCREENSHOT_DIR logical
`daily` (a server without retrieval, with a warm pool and a webhook that fails): signs in (a
wrong token first), checks the instance page (the full refresh offered only with a retrieval,
the warm pool per snapshot, the failed webhook delivery with its error), creates a clone with
limits and connects to it with psql through the copied connection string, observes it (start,
live state, stop, the summary), stops and starts it, resets it, protects it, sees the protected
clone's destroy refused, commits it, creates a branch from the commit in the history graph,
changes the clones' settings on the configuration page, and destroys the clone. `physical` (a
physical-mode server with a WAL archive, configuration changes disabled): snapshots the moment
LSN of the WAL window from the snapshots page, runs a full refresh from the instance page and
watches it to its end, and sees the configuration page locked with the reason. `logical` (a
logical-mode server with a source database): a full refresh and the databases it dumped, and the
retrieval's settings changed on the configuration page, a bad one refused. Every page is
shot at 1280x800 and at a phone's size, which must not scroll sideways, and parts are driven
from the keyboard alone. Any browser console error or Content-Security-Policy violation fails
the run.
"""

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

URL, TOKEN, PSQL, SHOTS, SCENARIO = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5]
CHROMIUM = "/usr/bin/chromium"
CLONE = "ui-clone"
WAIT_MS = 120_000

SHOTS.mkdir(parents=True, exist_ok=True)
problems = []


def shot(page, name):
    prefix = "" if SCENARIO == "daily" else f"{SCENARIO}-"
    page.screenshot(path=str(SHOTS / f"{prefix}{name}.png"), full_page=True)


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


def phone_pages(page, pages):
    """A phone-sized screen: every page fits its width."""
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path, heading in pages:
        page.goto(f"{URL}/#/{path}")
        expect(page.locator("main h1")).to_have_text(heading)
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, name)
        shot(page, f"phone-{name}")
    page.set_viewport_size({"width": 1280, "height": 800})


def tab_to(page, locator, limit=80):
    """Presses Tab until `locator` has the focus: it is reachable from the keyboard."""
    for _ in range(limit):
        if locator.evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {locator}")


def time_of(page, selector):
    """The machine-readable time a <time> inside `selector` shows, or "" for none."""
    found = page.locator(f"{selector} time")
    return found.get_attribute("datetime") if found.count() else ""


def daily(page):
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
    assert page.evaluate("sessionStorage.getItem('scion.token')") == TOKEN
    # Without a retrieval there is nothing to refresh from, and the page says why.
    expect(page.get_by_role("button", name="Full refresh")).to_be_disabled()
    expect(page.locator("#refresh-why")).to_contain_text("No retrieval is configured")
    # The warm pool fills on the head of main, shown per snapshot.
    warm = page.get_by_role("region", name="Warm pool")
    expect(warm).to_contain_text("1 of 1 warm clone ready")
    expect(warm.locator("[data-snapshot]")).to_have_count(1)
    shot(page, "instance")

    # Create a clone with a generated password.
    page.get_by_role("link", name="Clones", exact=True).click()
    page.get_by_role("link", name="New clone").click()
    page.get_by_label("Clone ID").fill(CLONE)
    page.get_by_label("Database user").fill("uitester")
    page.get_by_label("CPU limit (cores)").fill("1.5")
    page.get_by_label("Memory limit (MiB)").fill("256")
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
    expect(page.locator("[data-field=limits]")).to_have_text("1.5 CPU, 256 MiB memory")
    shot(page, "clone")

    # Observe it, from the keyboard: the settings, start, the live state, stop and the summary.
    page.get_by_label("Check every (s)").fill("1")
    tab_to(page, page.get_by_role("button", name="Start observing"))
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text("Observation session")
    live = page.locator("[data-field=observation-live]")
    expect(live).to_contain_text("Running for")
    until("two observed intervals", lambda: re.search(r"\b([2-9]|\d\d+) intervals checked", live.inner_text()))
    shot(page, "clone-observing")
    page.get_by_role("button", name="Stop observing").click()
    summary = page.get_by_role("group", name=re.compile(r"^Summary of session"))
    expect(summary).to_contain_text("passed")
    expect(summary).to_contain_text("No exclusive lock was held too long")
    expect(summary).to_contain_text("Database size")
    # Its artifacts download as files, fetched with the token.
    with page.expect_download() as download:
        summary.get_by_role("button", name="Download pg_stat_database").click()
    assert download.value.suggested_filename.endswith("-pg_stat_database.json"), download.value.suggested_filename
    rows = json.loads(Path(download.value.path()).read_text())
    assert any(row.get("datname") == "postgres" for row in rows), rows

    # Scale to zero by hand: stopped, then started again; the data stays.
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("[data-field=power]")).to_contain_text("stopped")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_visible()
    shot(page, "clone-stopped")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("[data-field=power]")).to_contain_text("running")
    assert psql(copied, "SELECT answer FROM ui_written") == "42"

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

    # The instance page lists the webhook delivery that failed, with its error, and shows the
    # hook by its origin only (its path is the kind of place a secret lives).
    page.get_by_role("link", name="Instance").click()
    failures = page.get_by_role("list", name="Webhook failures")
    expect(failures).to_contain_text(f"clone_create for {CLONE}")
    expect(failures).to_contain_text("failed after 1 attempt")
    expect(page.get_by_role("region", name="Webhook deliveries")).not_to_contain_text("secret-path")
    latest = page.get_by_text(re.compile(r"^The latest \d+ deliveries$"))
    tab_to(page, latest)
    page.keyboard.press("Enter")
    expect(page.get_by_role("region", name="Webhook deliveries").locator(".badge", has_text="delivered").first).to_be_visible()
    shot(page, "instance-webhooks")

    page.get_by_role("link", name="Snapshots").click()
    # Points in time need physical mode; the page says why it offers none.
    expect(page.locator("#pitr-why")).to_contain_text("Points in time need physical mode")
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

    # The clones' settings through the configuration page: saved, applied, and in the running
    # configuration below the form.
    page.get_by_role("link", name="Configuration").click()
    expect(page.locator("[data-field=retrieval-mode]")).to_have_text("unknown")
    settings = page.get_by_label("Clone settings")
    tab_to(page, settings)
    before = settings.input_value()
    settings.fill((before + "\n" if before else "") + "work_mem = 8MB")
    page.get_by_role("button", name="Save and apply").click()
    expect(page.locator("#notice")).to_contain_text("Saved")
    expect(settings).to_have_value(re.compile(r"work_mem = 8MB"))
    page.get_by_text("The whole running configuration").click()
    expect(page.get_by_label("The running configuration as YAML")).to_contain_text("work_mem")
    shot(page, "config")

    phone_pages(page, [("instance", "instance", "Instance"), ("clones", "clones", "Clones"),
                       ("clone", f"clone/{CLONE}", f"Clone {CLONE}"),
                       ("snapshots", "snapshots", "Snapshots"), ("branches", "branches", "Branches"),
                       ("config", "config", "Configuration")])

    # Unprotect and destroy: the clone leaves the list.
    page.goto(f"{URL}/#/clone/{CLONE}")
    page.get_by_role("button", name="Remove protection").click()
    expect(page.locator("[data-field=protected]")).to_contain_text("no")
    page.get_by_role("button", name="Destroy").click()
    confirm(page, "Destroy")
    expect(page.get_by_role("heading", name="Clones", exact=True)).to_be_visible()
    expect(page.locator(f"tr[data-key='{CLONE}']")).to_have_count(0, timeout=WAIT_MS)


def physical(page, lsn):
    """Physical mode: a snapshot of a past moment, a full refresh watched live, and the
    configuration page locked."""
    page.add_init_script(f"sessionStorage.setItem('scion.token', {TOKEN!r})")
    page.goto(f"{URL}/#/instance")
    retrieval = page.get_by_role("region", name="Retrieval")
    expect(retrieval).to_contain_text("physical mode")
    expect(retrieval).to_contain_text("Points in time")

    # A snapshot at a WAL location of the window, the kind of moment chosen from the keyboard.
    page.get_by_role("link", name="Snapshots").click()
    creator = page.get_by_role("region", name="New snapshot")
    expect(creator).to_contain_text("The WAL window reaches back to")
    before = page.locator("tbody tr").count()
    now = page.get_by_role("radio", name="Now")
    tab_to(page, now)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("radio", name="At a WAL location (LSN)")).to_be_checked()
    page.get_by_label("LSN", exact=True).fill(lsn)
    shot(page, "snapshot-point-in-time")
    page.get_by_role("button", name="Create snapshot").click()
    expect(page.locator("#notice")).to_contain_text(f"at {lsn}")
    expect(page.locator("tbody tr")).to_have_count(before + 1)
    # A moment outside the window is refused with the window in the API's words.
    page.get_by_label("LSN", exact=True).fill("0/1")
    page.get_by_role("button", name="Create snapshot").click()
    expect(page.locator("#notice .note.error")).to_contain_text("outside the WAL window")
    forgive_refusals()

    # A full refresh, confirmed, watched until its copy has finished and the latest refresh moved.
    page.get_by_role("link", name="Instance").click()
    latest = time_of(page, "[data-field=latest-refresh]")
    page.get_by_role("button", name="Full refresh").click()
    confirm(page, "Start the refresh")
    expect(page.locator("#notice")).to_contain_text("started")
    until("the refresh to run", lambda: "refreshing" in retrieval.inner_text() or time_of(page, "[data-field=latest-refresh]") != latest)
    shot(page, "instance-refreshing")
    until("the refresh to finish", lambda: time_of(page, "[data-field=latest-refresh]") not in ("", latest)
          and "finished" in retrieval.inner_text())
    expect(retrieval).to_contain_text("Stage: finished")
    expect(retrieval).to_contain_text("Bytes")
    shot(page, "instance")

    # Changes through the API are off: the page says so and offers nothing to save.
    page.get_by_role("link", name="Configuration").click()
    expect(page.locator("#config-locked")).to_contain_text("disable_config_modification")
    expect(page.get_by_role("button", name="Save and apply")).to_be_disabled()
    expect(page.locator("[data-field=retrieval-mode]")).to_have_text("physical")
    shot(page, "config-locked")

    phone_pages(page, [("instance", "instance", "Instance"), ("snapshots", "snapshots", "Snapshots"),
                       ("config", "config", "Configuration")])


def logical(page):
    """Logical mode: a full refresh with what it dumped, and the retrieval's settings changed on
    the configuration page (a bad option refused with the field named)."""
    page.add_init_script(f"sessionStorage.setItem('scion.token', {TOKEN!r})")
    page.goto(f"{URL}/#/instance")
    retrieval = page.get_by_role("region", name="Retrieval")
    expect(retrieval).to_contain_text("logical mode")
    expect(retrieval).to_contain_text("none scheduled")
    latest = time_of(page, "[data-field=latest-refresh]")
    page.get_by_role("button", name="Full refresh").click()
    confirm(page, "Start the refresh")
    until("the refresh to finish", lambda: time_of(page, "[data-field=latest-refresh]") not in ("", latest)
          and "finished" in retrieval.inner_text())
    expect(retrieval.get_by_role("list", name="Databases of the last run")).to_contain_text("shop_dev")
    shot(page, "instance")

    page.get_by_role("link", name="Configuration").click()
    expect(page.locator("[data-field=retrieval-mode]")).to_have_text("logical")
    expect(page.get_by_label("Host")).to_have_value("127.0.0.1")
    expect(page.get_by_label("User", exact=True)).to_have_value("reader")
    page.get_by_label("Dump options").fill("--ok option!")
    page.get_by_role("button", name="Save and apply").click()
    expect(page.locator("#notice .note.error")).to_contain_text("customOptions[1]")
    forgive_refusals()
    page.get_by_label("Dump options").fill("")
    page.get_by_label("Timetable").fill("0 3 * * *")
    page.get_by_label("Dump jobs").fill("2")
    page.get_by_role("button", name="Save and apply").click()
    expect(page.locator("#notice")).to_contain_text("Saved")
    shot(page, "config")
    page.reload()
    expect(page.get_by_label("Timetable")).to_have_value("0 3 * * *")
    expect(page.get_by_label("Dump jobs")).to_have_value("2")
    page.get_by_role("link", name="Instance").click()
    expect(retrieval).not_to_contain_text("none scheduled")

    phone_pages(page, [("instance", "instance", "Instance"), ("config", "config", "Configuration")])


def timing(browser):
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

    if SCENARIO == "daily":
        daily(page)
        timing(browser)
    elif SCENARIO == "logical":
        logical(page)
    else:
        physical(page, sys.argv[6])
    browser.close()

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"ui e2e: passed; screenshots in {SHOTS}")
