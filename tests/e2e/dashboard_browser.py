#!/usr/bin/python3
"""Browser checks of the receiver's web dashboard (docs/design.md, "Dashboard").

Run by tests/e2e/dashboard_browser_test.cc with Debian's /usr/bin/python3
(python3-selenium 4.8, chromium, chromium-driver) as

    dashboard_browser.py ARGS.json

ARGS.json holds (all written by the C++ test):
  dashboard_url     "http://127.0.0.1:PORT" of the real receiver's dashboard
  viewer_token, operator_token   secrets of the two entries of its tokens file
  webhook_url, webhook_auth      where to POST a webhook, X-JFrog-Event-Auth
  webhook_v2_body_file           file holding the body promoting v2
  v1_digest, v2_digest           "sha256:..." of the two test images
  hosts             agent names, e.g. ["h1", "h2"]
  service           "web"
  artifacts_dir     screenshots go here
  fixture_url, fixture_token     dashboard_fixture's URL and viewer token
  timeout_seconds   bound of every wait on a page condition (optional)
  rollout_timeout_seconds  bound of a wait for a rollout to finish (optional)

The receiver has already rolled v1 out to every host. The script promotes v2
with the webhook and, through the operator's browser, rolls back to v1.

Prints one line per check, "ok: ..." or "FAIL: ...", and exits 1 at the first
failure (after a screenshot failure.png). Every wait is a WebDriverWait on a
condition with a bounded timeout; no sleeps. Only 127.0.0.1 is contacted.
"""

import json
import os
import re
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ACTION_LABELS = ("Deploy", "Roll back", "Converge", "Resume", "Cancel")
NON_FINAL_PHASES = (
    "DEPLOY_PHASE_PULLING",
    "DEPLOY_PHASE_PULLED",
    "DEPLOY_PHASE_CREATING",
    "DEPLOY_PHASE_STOPPING_OLD",
    "DEPLOY_PHASE_STARTING",
    "DEPLOY_PHASE_HEALTH_CHECKING",
)
MAX_TAB_PRESSES = 300
MAX_PAGE_MS = 1000
MAX_PAGE_BYTES = 300 * 1024


class CheckFailed(Exception):
    pass


def ok(what):
    print(f"ok: {what}", flush=True)


def expect(condition, what, detail=""):
    """Prints ok: WHAT, or raises CheckFailed with WHAT and DETAIL."""
    if not condition:
        raise CheckFailed(f"{what}{': ' + str(detail) if detail else ''}")
    ok(what)


# ---- HTTP without the browser (urllib, never following redirects) ----


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# No proxy from the environment: only 127.0.0.1 is contacted.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                      _NoRedirect())


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body  # bytes

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


def http(method, url, form=None, cookie=None, headers=None, body=None):
    """One request; returns an Answer for any status (3xx not followed)."""
    if urllib.parse.urlsplit(url).hostname != "127.0.0.1":
        raise CheckFailed(f"refusing to contact {url}: not 127.0.0.1")
    all_headers = dict(headers or {})
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        all_headers["Cookie"] = f"hoist_session={cookie}"
    req = urllib.request.Request(url, data=body, headers=all_headers,
                                 method=method)
    try:
        with _OPENER.open(req, timeout=30) as res:
            return Answer(res.status, res.headers, res.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())


def session_cookie(answer):
    """The hoist_session value a Set-Cookie of `answer` sets, or None."""
    for header in answer.headers.get_all("Set-Cookie") or []:
        m = re.match(r"\s*hoist_session=([^;]*)", header)
        if m:
            return m.group(1)
    return None


# ---- The browser ----


def start_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-proxy-server",
                "--no-first-run", "--disable-background-networking",
                "--disable-sync", "--disable-component-update",
                "--disable-default-apps", "--disable-extensions",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                            options=options)


class Dashboard:
    """The browser and the arguments, with helpers the checks share."""

    def __init__(self, args, driver):
        self.args = args
        self.driver = driver
        self.base = args["dashboard_url"].rstrip("/")
        self.service = args.get("service", "web")
        self.hosts = args["hosts"]
        self.v1 = args["v1_digest"]
        self.v2 = args["v2_digest"]
        self.timeout = float(args.get("timeout_seconds", 60))
        self.rollout_timeout = float(args.get("rollout_timeout_seconds", 180))
        self.artifacts = args["artifacts_dir"]
        self.v2_rollout = None  # id of the webhook's rollout of v2

    # -- waiting --

    def wait(self, condition, what, timeout=None):
        """WebDriverWait until condition(driver) is truthy; returns its value."""
        try:
            return WebDriverWait(self.driver, timeout or self.timeout,
                                 poll_frequency=0.1).until(condition)
        except TimeoutException:
            raise CheckFailed(
                f"timed out after {timeout or self.timeout:.0f} s waiting "
                f"for {what} (at {self.driver.current_url})")

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def path(self):
        return urllib.parse.urlsplit(self.driver.current_url).path

    def open(self, path, ready_css):
        """Loads base+path and waits until `ready_css` is in the page."""
        self.driver.get(self.base + path)
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ready_css),
                  f"{ready_css} on {path}")

    def screenshot(self, name):
        path = os.path.join(self.artifacts, f"{name}.png")
        if not self.driver.save_screenshot(path):
            raise CheckFailed(f"screenshot {path} not written")

    # -- sessions --

    def login(self, token, base=None):
        """Logs the browser in with `token` through the login form."""
        base = base or self.base
        self.driver.delete_all_cookies()
        self.driver.get(base + "/login")
        self.wait(lambda d: d.find_elements(By.ID, "token"), "the login form")
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR,
                                 "button[type=submit]").click()
        self.wait(lambda d: urllib.parse.urlsplit(d.current_url).path == "/"
                  and d.find_elements(By.ID, "fleet"),
                  "the fleet page after logging in")

    def cookie(self):
        c = self.driver.get_cookie("hoist_session")
        if not c:
            raise CheckFailed("no hoist_session cookie in the browser")
        return c["value"]

    def csrf(self):
        """The session's CSRF token, from the logout form's hidden field."""
        fields = self.driver.find_elements(
            By.CSS_SELECTOR, 'form[action="/logout"] input[name="csrf"]')
        if not fields or not fields[0].get_attribute("value"):
            raise CheckFailed(
                f"no logout form with a csrf field on {self.path()}")
        return fields[0].get_attribute("value")

    def get_json(self, path, cookie):
        sep = "&" if "?" in path else "?"
        answer = http("GET", f"{self.base}{path}{sep}format=json",
                      cookie=cookie)
        if answer.status != 200:
            raise CheckFailed(
                f"GET {path}?format=json: {answer.status} {answer.text[:300]}")
        return answer.json()

    def rollouts(self, cookie):
        return self.get_json("/rollouts", cookie).get("rollouts", [])

    # -- page contents --

    def cell(self, host):
        return self.driver.find_element(By.ID, f"cell-{self.service}--{host}")

    def cells_show(self, digest):
        """Condition: every host's fleet cell has data-digest == digest."""
        def condition(d):
            for host in self.hosts:
                found = d.find_elements(By.ID,
                                        f"cell-{self.service}--{host}")
                if not found or found[0].get_attribute("data-digest") != digest:
                    return False
            return True
        return condition

    def rollout_state_is(self, state):
        def condition(d):
            found = d.find_elements(By.ID, "rollout-state")
            return found and found[0].get_attribute("data-state") == state
        return condition

    def action_buttons(self):
        """Texts of buttons / submit inputs labelled like an action."""
        labels = self.js("""
            return [...document.querySelectorAll(
                'button, input[type=submit], input[type=button]')]
              .map(e => (e.tagName == 'BUTTON' ? e.textContent : e.value)
                          .trim().replace(/\\s+/g, ' '));""")
        return [l for l in labels
                if any(l == a or l.startswith(a + " ") or l == "Confirm: " + a
                       for a in ACTION_LABELS)]

    def shown_buttons(self, *labels):
        """The displayed buttons whose text is one of `labels`."""
        return [b.text for b in self.driver.find_elements(By.TAG_NAME,
                                                          "button")
                if b.text.strip() in labels and b.is_displayed()]

    def leaks(self, text):
        """What of the fleet's data `text` (HTML or JSON) shows: host names
        as words of its text (not tag names like h1), digests, fleet cells."""
        words = re.sub(r"(?is)<(style|script)\b.*?</\1>|<[^>]*>", " ", text)
        found = []
        for host in self.hosts:
            if re.search(rf"(?<![\w-]){re.escape(host)}(?![\w-])", words):
                found.append(host)
        for digest in (self.v1, self.v2):
            if digest[7:19] in text:
                found.append(digest[:19])
        if f"cell-{self.service}--" in text:
            found.append("fleet cells")
        return found


# ---- Check groups, in the order main() runs them ----


def check_access(dash):
    """No session: redirected to /login, no data in HTML or JSON."""
    d = dash.driver
    d.delete_all_cookies()
    for path in ("/", f"/services/{dash.service}", "/rollouts", "/agents"):
        d.get(dash.base + path)
        dash.wait(lambda d: urllib.parse.urlsplit(d.current_url).path
                  == "/login", f"the redirect of {path} to /login")
        page = d.page_source
        expect(not dash.leaks(page),
               f"no session: {path} lands on /login with no fleet data",
               dash.leaks(page))
        answer = http("GET", dash.base + path)
        expect(answer.status == 303 and
               answer.headers.get("Location", "").endswith("/login") and
               not dash.leaks(answer.text),
               f"no session: GET {path} answers 303 to /login, no data",
               f"{answer.status} Location={answer.headers.get('Location')} "
               f"leaks={dash.leaks(answer.text)}")
    dash.wait(lambda d: d.find_elements(By.ID, "token"), "the login form")
    label = d.find_elements(By.CSS_SELECTOR, 'label[for="token"]')
    token = d.find_element(By.ID, "token")
    expect(label and token.get_attribute("type") == "password" and
           token.get_attribute("name") == "token" and
           d.find_elements(By.XPATH,
                           "//button[@type='submit'][normalize-space()="
                           "'Log in']"),
           "login form: labelled password field 'token', button 'Log in'")
    dash.screenshot("login")

    for path in ("/", "/agents", "/rollouts", f"/services/{dash.service}"):
        answer = http("GET", f"{dash.base}{path}?format=json")
        try:
            body = answer.json()
        except ValueError:
            body = None
        expect(answer.status == 401 and isinstance(body, dict) and
               not ({"services", "agents", "rollouts", "hosts", "name"}
                    & set(body)) and not dash.leaks(answer.text),
               f"no session: GET {path}?format=json answers 401 with a "
               f"JSON error and no data",
               f"{answer.status} {answer.text[:300]}")

    wrong = http("POST", dash.base + "/login", form={"token": "not-a-token"})
    expect(wrong.status == 401 and 'role="alert"' in wrong.text and
           session_cookie(wrong) is None,
           "a wrong token answers 401 with an alert and no cookie",
           f"{wrong.status} {wrong.text[:300]}")


def check_viewer(dash):
    """A viewer sees the fleet but has no actions, and actions answer 403."""
    d = dash.driver
    login = http("POST", dash.base + "/login",
                 form={"token": dash.args["viewer_token"]})
    set_cookie = " ".join(login.headers.get_all("Set-Cookie") or [])
    expect(login.status == 303 and login.headers.get("Location") in
           ("/", dash.base + "/") and session_cookie(login) and
           "HttpOnly" in set_cookie and
           re.search(r"SameSite=Strict", set_cookie, re.I),
           "login answers 303 to / with an HttpOnly SameSite=Strict cookie",
           f"{login.status} Location={login.headers.get('Location')} "
           f"Set-Cookie={set_cookie}")

    dash.login(dash.args["viewer_token"])
    cookie = dash.cookie()
    browser_cookie = d.get_cookie("hoist_session")
    expect(browser_cookie.get("httpOnly") and
           browser_cookie.get("sameSite") == "Strict",
           "the browser holds hoist_session as HttpOnly, SameSite=Strict",
           browser_cookie)

    fleet = dash.get_json("/", cookie)
    services = {s["name"]: s for s in fleet.get("services", [])}
    web = services.get(dash.service, {})
    hosts = {h.get("agent"): h for h in web.get("hosts", [])}
    expect(web.get("desired_digest") == dash.v1 and
           sorted(hosts) == sorted(dash.hosts) and
           all(h.get("convergence") == "CONVERGENCE_IN_SYNC" and
               h.get("running_digest") == dash.v1 for h in hosts.values()),
           "viewer: /?format=json shows v1 in sync on every host", fleet)
    agents = dash.get_json("/agents", cookie).get("agents", [])
    expect(sorted(a.get("name") for a in agents) == sorted(dash.hosts),
           "viewer: /agents?format=json lists every agent", agents)
    rollouts = dash.rollouts(cookie)
    expect(rollouts and rollouts[0].get("state") == "ROLLOUT_STATE_SUCCEEDED"
           and rollouts[0].get("digest") == dash.v1,
           "viewer: /rollouts?format=json has v1's rollout SUCCEEDED",
           rollouts[:1])
    v1_rollout = rollouts[0]["id"]

    dash.open("/", "#fleet")
    for host in dash.hosts:
        cell = dash.cell(host)
        expect(cell.get_attribute("data-digest") == dash.v1 and
               cell.get_attribute("data-convergence") ==
               "CONVERGENCE_IN_SYNC" and cell.text.strip(),
               f"viewer: fleet cell of {host} shows v1 in sync", cell.text)
    pages = (("/", "#fleet"), (f"/services/{dash.service}", "#hosts"),
             (f"/rollouts/{v1_rollout}", "#rollout-state"))
    for path, ready in pages:
        dash.open(path, ready)
        found = dash.action_buttons()
        expect(not found, f"viewer: no action buttons on {path}", found)
    csrf = dash.csrf()

    before = len(dash.rollouts(cookie))
    actions = [(f"/services/{dash.service}/deploy",
                {"tag": "v2", "digest": dash.v2}),
               (f"/services/{dash.service}/rollback", {}),
               (f"/services/{dash.service}/converge", {}),
               (f"/rollouts/{v1_rollout}/resume", {}),
               (f"/rollouts/{v1_rollout}/cancel", {})]
    for path, fields in actions:
        for confirm in ({}, {"confirm": "yes"}):
            form = dict(fields, csrf=csrf, **confirm)
            answer = http("POST", dash.base + path, form=form, cookie=cookie)
            expect(answer.status == 403,
                   f"viewer: POST {path} {'confirmed ' if confirm else ''}"
                   f"answers 403", f"{answer.status} {answer.text[:200]}")
    expect(len(dash.rollouts(cookie)) == before,
           "viewer: the refused actions started no rollout")


def install_rollout_recorder(dash):
    """Records every host phase and rollout state the page shows from now on
    into window.__seen (initial values marked live=false)."""
    dash.js("""
      window.__hoist_marker = 1;
      window.__seen = [];
      const last = {};
      const snapshot = (live) => {
        const record = (key, value) => {
          if (value && last[key] !== value) {
            last[key] = value;
            window.__seen.push({key: key, value: value, live: live});
          }
        };
        const state = document.getElementById('rollout-state');
        if (state) record('rollout', state.getAttribute('data-state'));
        for (const row of document.querySelectorAll('tr[id^="host-"]')) {
          record(row.id.substring(5), row.getAttribute('data-phase'));
        }
      };
      snapshot(false);
      new MutationObserver(() => snapshot(true)).observe(document.body,
          {subtree: true, childList: true, attributes: true,
           attributeFilter: ['data-phase', 'data-state']});""")


def check_live_updates(dash):
    """Operator: v2's webhook updates the fleet page and the rollout page
    live over SSE, with no reload."""
    d = dash.driver
    dash.login(dash.args["operator_token"])
    fleet_window = d.current_window_handle
    dash.wait(lambda d: d.find_element(By.ID, "live-status").text.strip()
              == "live", "#live-status to read 'live' on the fleet page")
    ok("fleet page: the event stream is live")
    dash.js("window.__hoist_marker = 1;")

    with open(dash.args["webhook_v2_body_file"], "rb") as f:
        body = f.read()
    answer = http("POST", dash.args["webhook_url"], body=body,
                  headers={"X-JFrog-Event-Auth": dash.args["webhook_auth"],
                           "Content-Type": "application/json"})
    rollout_id = answer.json().get("rollout_id") if answer.status == 202 \
        else None
    expect(rollout_id, "the v2 webhook answers 202 with a rollout_id",
           f"{answer.status} {answer.text[:300]}")
    dash.v2_rollout = rollout_id

    d.switch_to.new_window("window")
    dash.open(f"/rollouts/{rollout_id}", "#rollout-state")
    install_rollout_recorder(dash)
    dash.wait(dash.rollout_state_is("ROLLOUT_STATE_SUCCEEDED"),
              f"rollout {rollout_id} to show SUCCEEDED",
              dash.rollout_timeout)
    seen = dash.js("return window.__seen;")
    live = [s for s in seen if s["live"]]
    hosts_live = {s["key"] for s in live if s["key"] != "rollout"}
    expect(any(s["value"] in NON_FINAL_PHASES for s in live),
           "rollout page: a non-final deploy phase arrived live",
           seen)
    expect(any(s["key"] in dash.hosts and
               s["value"] == "DEPLOY_PHASE_SUCCEEDED" for s in live),
           "rollout page: DEPLOY_PHASE_SUCCEEDED arrived live", seen)
    expect(any(s["key"] == "rollout" and
               s["value"] == "ROLLOUT_STATE_SUCCEEDED" for s in live),
           "rollout page: ROLLOUT_STATE_SUCCEEDED arrived live", seen)
    expect(dash.js("return window.__hoist_marker;") == 1,
           "rollout page: not reloaded while it updated")
    ok(f"rollout page saw live: "
       f"{', '.join(s['key'] + '=' + s['value'] for s in live)} "
       f"(hosts {sorted(hosts_live)})")
    for host in dash.hosts:
        row = d.find_elements(By.ID, f"host-{host}")
        expect(row and row[0].get_attribute("data-phase") ==
               "DEPLOY_PHASE_SUCCEEDED" and
               d.find_elements(By.ID, f"pull-{host}"),
               f"rollout page: {host} SUCCEEDED, with its pull progress bar")
    dash.screenshot("rollout")
    shown = dash.shown_buttons("Resume", "Cancel")
    expect(not shown, "rollout page: no Resume or Cancel shown once the "
           "rollout SUCCEEDED live", f"still shown: {shown}")
    d.close()
    d.switch_to.window(fleet_window)

    dash.wait(dash.cells_show(dash.v2),
              "both fleet cells to show the v2 digest")
    expect(dash.js("return window.__hoist_marker;") == 1,
           "fleet page: cells turned to v2 without a reload")
    for host in dash.hosts:
        cell = dash.cell(host)
        code = cell.find_elements(By.TAG_NAME, "code")
        expect(code and code[0].text.strip() == dash.v2[7:19],
               f"fleet cell of {host} shows v2's short digest",
               code[0].text if code else "no <code>")
    dash.wait(lambda d: all(dash.cell(h).get_attribute("data-convergence")
                            == "CONVERGENCE_IN_SYNC" for h in dash.hosts),
              "both fleet cells to read in sync")
    ok("fleet page: both hosts in sync on v2")
    dash.screenshot("fleet")


def check_actions(dash):
    """Operator rolls back through the confirmation page; a POST without the
    CSRF token is refused."""
    d = dash.driver
    cookie = dash.cookie()
    dash.open(f"/services/{dash.service}", "#hosts")
    expect(d.find_element(By.ID, "desired-digest").text.strip() == dash.v2,
           "service page: desired digest is v2",
           d.find_element(By.ID, "desired-digest").text)
    for label in ("Deploy", "Roll back", "Converge"):
        expect(d.find_elements(By.XPATH,
                               f"//button[normalize-space()='{label}']"),
               f"service page: operator sees the button '{label}'")
    expect(d.find_elements(By.ID, "deploy-tag") and
           d.find_elements(By.ID, "deploy-digest") and
           d.find_elements(By.CSS_SELECTOR, "table#history"),
           "service page: deploy fields and history table")
    dash.screenshot("service")
    known = {r["id"] for r in dash.rollouts(cookie)}

    d.find_element(By.XPATH, "//button[normalize-space()='Roll back']").click()
    confirm_xpath = "//button[normalize-space()='Confirm: Roll back']"
    dash.wait(lambda d: d.find_elements(By.XPATH, confirm_xpath),
              "the confirmation page of 'Roll back'")
    form = d.find_element(By.XPATH, confirm_xpath + "/ancestor::form")
    hidden = {e.get_attribute("name"): e.get_attribute("value")
              for e in form.find_elements(By.CSS_SELECTOR,
                                          "input[type=hidden]")}
    expect(hidden.get("confirm") == "yes" and hidden.get("csrf") and
           (form.get_attribute("action") or "").endswith(
               f"/services/{dash.service}/rollback"),
           "confirmation page: form to rollback with csrf and confirm=yes",
           hidden)
    dash.screenshot("confirm")

    d.find_element(By.XPATH, confirm_xpath).click()
    dash.wait(lambda d: re.fullmatch(r"/rollouts/[^/]+", dash.path()) and
              dash.path().split("/")[2] not in known and
              d.find_elements(By.ID, "rollout-state"),
              "the new rollout's page after confirming")
    rollback_id = urllib.parse.unquote(dash.path().split("/")[2])
    ok(f"confirming lands on the new rollout {rollback_id}")
    dash.wait(dash.rollout_state_is("ROLLOUT_STATE_SUCCEEDED"),
              f"rollback {rollback_id} to show SUCCEEDED",
              dash.rollout_timeout)
    rollout = dash.get_json(f"/rollouts/{rollback_id}", cookie)
    expect(rollout.get("digest") == dash.v1 and
           rollout.get("trigger") == "rollback",
           "the rollback rolled out v1 (trigger rollback)", rollout)

    dash.open("/", "#fleet")
    dash.wait(dash.cells_show(dash.v1), "both fleet cells to show v1 again")
    ok("fleet page: both hosts back on v1")

    count = len(dash.rollouts(cookie))
    forged = (("no csrf field", {"confirm": "yes"}),
              ("a wrong csrf", {"confirm": "yes", "csrf": "0" * 64}),
              ("an empty csrf", {"confirm": "yes", "csrf": ""}))
    for what, form in forged:
        answer = http("POST", f"{dash.base}/services/{dash.service}/rollback",
                      form=form, cookie=cookie)
        expect(answer.status == 403,
               f"forged rollback POST with the operator's cookie and {what} "
               f"answers 403", f"{answer.status} {answer.text[:200]}")
    expect(len(dash.rollouts(cookie)) == count,
           "the forged POSTs started no rollout")


UNLABELLED_FIELDS_JS = """
  const visible = e => !!(e.offsetWidth || e.offsetHeight ||
                          e.getClientRects().length);
  return [...document.querySelectorAll('input, select, textarea')]
    .filter(e => visible(e) && !['hidden', 'submit', 'button', 'reset',
                                 'image'].includes(e.type))
    .filter(e => !(e.id && document.querySelector(
                      'label[for="' + CSS.escape(e.id) + '"]')) &&
                 !(e.getAttribute('aria-label') || '').trim() &&
                 !(e.getAttribute('aria-labelledby') || '').trim())
    .map(e => e.outerHTML.substring(0, 120));"""


def unlabelled_fields(dash):
    return dash.js(UNLABELLED_FIELDS_JS)


def tab_reaches_everything(dash):
    """Presses TAB from the top of a freshly loaded page (nothing focused
    yet); returns the visible links and buttons focus never reached, and how
    many there are."""
    total = dash.js("""
      const visible = e => !!(e.offsetWidth || e.offsetHeight ||
                              e.getClientRects().length);
      const all = [...document.querySelectorAll('a[href], button')]
          .filter(e => visible(e) && !e.disabled);
      all.forEach((e, i) => e.setAttribute('data-tabcheck', i));
      return all.length;""")
    reached = set()
    for _ in range(MAX_TAB_PRESSES):
        ActionChains(dash.driver).send_keys(Keys.TAB).perform()
        index = dash.js("""const e = document.activeElement;
                           return e ? e.getAttribute('data-tabcheck') : null;""")
        if index is not None:  # focus may pass through the browser's UI
            reached.add(int(index))
        if len(reached) == total:
            break
    return dash.js("""
      return [...document.querySelectorAll('[data-tabcheck]')]
        .filter(e => !arguments[0].includes(+e.getAttribute('data-tabcheck')))
        .map(e => e.outerHTML.substring(0, 120));""", sorted(reached)), total


def check_accessibility(dash):
    """Labels on every field, text on every fleet cell, TAB reaches every
    link and button; screenshots of the pages not taken yet."""
    d = dash.driver
    cookie = dash.cookie()
    rollback_id = dash.rollouts(cookie)[0]["id"]
    pages = [("/", "#fleet", None),
             (f"/services/{dash.service}", "#hosts", None),
             ("/rollouts", "#rollouts", "rollouts"),
             (f"/rollouts/{rollback_id}", "#rollout-state", None),
             ("/agents", "#agents", "agents")]
    for path, ready, shot in pages:
        dash.open(path, ready)
        missing = unlabelled_fields(dash)
        expect(not missing, f"{path}: every field has a label", missing)
        if shot:
            dash.screenshot(shot)
        if path == "/":
            empty = dash.js("""
              return [...document.querySelectorAll('td[id^="cell-"]')]
                .filter(c => !c.innerText.trim()).map(c => c.id);""")
            expect(not empty, "/: every fleet cell has a text label", empty)
        if path == "/rollouts":
            expect(d.find_elements(By.ID, "f-service") and
                   d.find_elements(By.CSS_SELECTOR, "select#f-state") and
                   d.find_elements(By.XPATH,
                                   "//button[normalize-space()='Filter']"),
                   "/rollouts: filter form with service, state and Filter")
            rows = d.find_elements(By.CSS_SELECTOR, 'tr[id^="rollout-"]')
            expect(len(rows) >= 3 and all(r.get_attribute("data-state")
                                          for r in rows),
                   "/rollouts: a row with data-state per rollout", len(rows))
        if path == "/agents":
            for host in dash.hosts:
                row = d.find_elements(By.ID, f"agent-{host}")
                expect(row and row[0].get_attribute("data-reachable") ==
                       "true", f"/agents: {host} reachable")
        if path == f"/rollouts/{rollback_id}":
            shown = dash.shown_buttons("Resume", "Cancel")
            expect(not shown, f"{path}: finished, so no Resume or Cancel",
                   shown)
        if path in (f"/services/{dash.service}", f"/rollouts/{rollback_id}"):
            missed, total = tab_reaches_everything(dash)
            expect(not missed,
                   f"{path}: TAB reaches all {total} links and buttons",
                   missed)

    d.delete_all_cookies()
    dash.open("/login", "#token")
    missing = unlabelled_fields(dash)
    expect(not missing, "/login: every field has a label", missing)


def check_layout(dash):
    """Against the 1000-host fixture: the fleet page loads in < 1 s and its
    HTML is < 300 KB; failed logins are limited."""
    d = dash.driver
    base = dash.args["fixture_url"].rstrip("/")
    dash.login(dash.args["fixture_token"], base=base)
    cookie = dash.cookie()
    d.get(base + "/")
    timing = dash.wait(lambda d: d.execute_script("""
        const n = performance.getEntriesByType('navigation')[0];
        return n && n.loadEventEnd > 0 ? n.toJSON() : null;"""),
        "the fixture's fleet page to finish loading")
    cells = len(d.find_elements(By.CSS_SELECTOR, 'td[id^="cell-"]'))
    expect(cells == 1000, "fixture: the fleet page has 1000 cells", cells)
    load_ms = timing["loadEventEnd"] - timing["startTime"]
    server_ms = timing["responseStart"] - timing["requestStart"]
    print(f"figure: fixture fleet page load {load_ms:.0f} ms (duration "
          f"{timing['duration']:.0f} ms; the server answered after "
          f"{server_ms:.0f} ms, the body was in at "
          f"{timing['responseEnd']:.0f} ms)", flush=True)
    # The same request as the browser's, timed, to tell the server's part.
    start = time.monotonic()
    as_browser = http("GET", base + "/", cookie=cookie, headers={
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Accept": "text/html"})
    print(f"figure: fixture fleet page by urllib with the browser's "
          f"Accept-Encoding: {(time.monotonic() - start) * 1000:.0f} ms, "
          f"Content-Encoding {as_browser.headers.get('Content-Encoding')}, "
          f"{len(as_browser.body)} bytes on the wire", flush=True)
    expect(load_ms < MAX_PAGE_MS,
           f"fixture: fleet page loads in {load_ms:.0f} ms < {MAX_PAGE_MS}",
           f"the server took {server_ms:.0f} ms of it")
    answer = http("GET", base + "/", cookie=cookie)
    size = len(answer.body)
    print(f"figure: fixture fleet page HTML {size} bytes "
          f"({size / 1024:.1f} KB; browser decodedBodySize "
          f"{timing['decodedBodySize']}, transferSize "
          f"{timing['transferSize']})", flush=True)
    expect(answer.status == 200 and size < MAX_PAGE_BYTES and
           timing["decodedBodySize"] < MAX_PAGE_BYTES,
           f"fixture: fleet page HTML {size / 1024:.0f} KB < "
           f"{MAX_PAGE_BYTES // 1024} KB")
    dash.screenshot("fixture-fleet")

    statuses = [http("POST", base + "/login",
                     form={"token": f"wrong-{i}"}).status for i in range(8)]
    expect(statuses[0] == 401 and 429 in statuses and
           set(statuses) <= {401, 429} and
           statuses.index(429) <= 6 and
           all(s == 429 for s in statuses[statuses.index(429):]),
           "fixture: repeated wrong tokens end in 429", statuses)


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} ARGS.json", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        args = json.load(f)
    os.makedirs(args["artifacts_dir"], exist_ok=True)
    try:
        driver = start_browser()
    except WebDriverException as e:
        print(f"FAIL: cannot start chromium through /usr/bin/chromedriver: "
              f"{e}", flush=True)
        return 1
    try:
        return run_checks(Dashboard(args, driver))
    finally:
        driver.quit()


def run_checks(dash):
    driver = dash.driver
    args = dash.args
    try:
        for group in (check_access, check_viewer, check_live_updates,
                      check_actions, check_accessibility, check_layout):
            print(f"== {group.__name__}: {group.__doc__.splitlines()[0]}",
                  flush=True)
            group(dash)
        print("all dashboard browser checks passed", flush=True)
        return 0
    except CheckFailed as e:
        print(f"FAIL: {e}", flush=True)
    except (WebDriverException, OSError, ValueError, KeyError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(file=sys.stdout)
    try:
        print(f"at {driver.current_url}", flush=True)
        driver.save_screenshot(os.path.join(args["artifacts_dir"],
                                            "failure.png"))
        with open(os.path.join(args["artifacts_dir"], "failure.html"),
                  "w") as f:
            f.write(driver.page_source)
    except WebDriverException:
        pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
