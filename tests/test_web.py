"""The audit view in headless Chromium against a real Airflow api-server.

One module-wide site: the sandbox, a PostgreSQL metadata database migrated for Airflow and the
FAB auth manager (which has DAG-level permissions), two manifests each run for real with
``airflow dags test`` (one of them twice, with a re-pushed upstream in between), FAB users
``admin`` (every DAG) and ``alice`` (a role that may read ``ecr_mirror__web_team`` only), and the
api-server serving the plugin. Expectations come from the audit store and the seeded upstream.
Screenshots are saved in each test's tmp_path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from ecr_mirror.audit import AuditRecord, AuditStore
from sandbox.upstream import seed_image
from tests.airflow_stack import AirflowStack, create_stack
from tests.web_stack import FAB_AUTH_MANAGER, chromium, dags_test, fab_token, fab_user, start_api_server

pytestmark = [pytest.mark.slow, pytest.mark.stack]

HUB = "registry-1.docker.io"
TEAM, SECRET = "ecr_mirror__web_team", "ecr_mirror__web_secret"
RULE = (
    "rules:\n  - prefix: {p}\n    upstream: docker-hub\n"
    "    credential_secret: ecr-pullthroughcache/docker-hub\n"
)
MANIFESTS = {
    "web-team": "name: web-team\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\n"
    + RULE.format(p="team")
    + "images:\n"
    '  - image: acme/web-app\n    tags: ["1.0", "2.0"]\n    platforms: [linux/arm64]\n'
    '  - image: acme/web-tool\n    tags: ["1.0", "9.9"]\n    warm_layers: true\n'
    "    on_drift: evict-and-repull\n",
    "web-secret": "name: web-secret\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\n"
    + RULE.format(p="secret")
    + 'images:\n  - image: acme/secret-app\n    tags: ["1.0"]\n',
}
USERS = {"admin": ("admin-pw", "Admin"), "alice": ("alice-pw", "web-team-readers")}


@dataclass
class Site:
    stack: AirflowStack
    #: run ids of web-team, oldest first, and of web-secret
    team_runs: list[str]
    secret_run: str
    #: upstream digests as seeded: (image, tag, variant) -> digest
    upstream: dict[tuple[str, str, str], str]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.stack.url

    def records(self, dag_id: str, run_id: str) -> list[AuditRecord]:
        store = AuditStore(self.stack.db_url)
        try:
            return store.records(dag_id=dag_id, run_id=run_id)
        finally:
            store.engine.dispose()

    def get(self, path: str, user: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if user:
            if user not in self.tokens:
                self.tokens[user] = fab_token(self.stack, user, USERS[user][0])
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return httpx.get(f"{self.url}/ecr-mirror{path}", headers=headers, timeout=30, **kwargs)


def run_path(dag_id: str, run_id: str) -> str:
    return f"/dags/{dag_id}/runs/{quote(run_id, safe='')}"


@pytest.fixture(scope="module")
def site(shared_sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    rules = shared_sandbox.rule_prefixes()
    home = tmp_path_factory.mktemp("web")
    (home / "manifests").mkdir()
    for name, text in MANIFESTS.items():
        (home / "manifests" / f"{name}.yaml").write_text(text)
    hub = shared_sandbox.upstreams[HUB]
    upstream = {}
    seeds: list[tuple[str, str, dict[str, Any]]] = [
        ("acme/web-app", "1.0", {}),
        ("acme/web-app", "2.0", {}),
        ("acme/web-tool", "1.0", {"platforms": ()}),
        ("acme/secret-app", "1.0", {}),
    ]
    for image, tag, kwargs in seeds:
        upstream[image, tag, ""] = seed_image(hub, image, tag, **kwargs).digest
    stack = create_stack(
        home,
        {
            **shared_sandbox.environment(),
            "ECR_MIRROR_MANIFEST_DIR": str(home / "manifests"),
            "ECR_MIRROR_DEADLINES": "false",  # `airflow dags test` runs no deadline (see demo.py)
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            # every test logs in: FAB's login rate limit (5 per 40 s) would refuse the later ones
            "AIRFLOW__FAB__AUTH_RATE_LIMITED": "False",
        },
    )
    try:
        audit = AuditStore(stack.db_url)
        try:
            assert dags_test(stack, TEAM) == "failed"  # web-tool:9.9 is not upstream
            # upstream re-pushes both 1.0 tags: web-app's stays cached (stale), web-tool's is evicted
            upstream["acme/web-app", "1.0", "rebuilt"] = seed_image(
                hub, "acme/web-app", "1.0", variant="rebuilt"
            ).digest
            upstream["acme/web-tool", "1.0", "rebuilt"] = seed_image(
                hub, "acme/web-tool", "1.0", platforms=(), variant="rebuilt"
            ).digest
            assert dags_test(stack, TEAM) == "failed"
            assert dags_test(stack, SECRET) == "success"
            team_runs = [s.run_id for s in reversed(audit.summaries(dag_id=TEAM))]
            secret_run = audit.summaries(dag_id=SECRET)[0].run_id
        finally:
            audit.engine.dispose()
        stack.run("airflow", "sync-perm", "--include-dags")
        stack.run("airflow", "roles", "create", "web-team-readers")
        stack.run("airflow", "roles", "add-perms", "web-team-readers", "-r", f"DAG:{TEAM}", "-a", "can_read")
        for name, (password, role) in USERS.items():
            fab_user(stack, name, password, role)
        start_api_server(stack)
        yield Site(stack, team_runs, secret_run, upstream)
    finally:
        stack.stop()
        shared_sandbox.delete_rules_except(rules)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = chromium(tmp_path)
    try:
        yield driver
    finally:
        # what the browser showed last, for a failing test
        driver.save_screenshot(str(tmp_path / "last.png"))
        (tmp_path / "last.html").write_text(driver.page_source)
        driver.quit()


def login(driver: WebDriver, site: Site, user: str, path: str = "/") -> None:
    """Open an audit page: the view sends the browser to Airflow's login, which comes back to it."""
    driver.get(f"{site.url}/ecr-mirror{path}")
    assert "/auth/login" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(USERS[user][0])
    driver.find_element(By.CSS_SELECTOR, "[type=submit]").click()
    WebDriverWait(driver, 30).until(lambda d: "/auth/login" not in d.current_url)


def rows(driver: WebDriver) -> dict[str, dict[str, Any]]:
    """The tag rows of the page as a user reads them: key ``repository:tag``."""
    notes = {
        tr.get_attribute("data-note-for"): tr.text
        for tr in driver.find_elements(By.CSS_SELECTOR, "table.tags tr[data-note-for]")
    }
    out = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "table.tags tr[data-tag]"):
        key = tr.get_attribute("data-tag") or ""
        cells = tr.find_elements(By.TAG_NAME, "td")
        digests = [
            [c.get_attribute("data-digest") for c in cell.find_elements(By.CSS_SELECTOR, "code.digest")]
            for cell in cells
        ]
        out[key] = {"text": [c.text for c in cells], "digests": digests, "note": notes.get(key, "")}
    return out


def shot(driver: WebDriver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))


def test_an_unauthenticated_request_is_refused(site: Site, browser: WebDriver, tmp_path: Path):
    run = run_path(TEAM, site.team_runs[-1])
    digest = site.upstream["acme/web-app", "1.0", "rebuilt"]
    for path in ("/", run, "/tags", "/history?repository=team/acme/web-app&tag=1.0"):
        anonymous = site.get(f"{path}{'&' if '?' in path else '?'}format=json")
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        forged = site.get(path, headers={"Authorization": "Bearer not.a.token"})
        assert forged.status_code == 401, (path, forged.text)
        assert digest not in anonymous.text + forged.text
    # a browser without a session is sent to Airflow's login page, which leads back to the page
    page = site.get(run, headers={"Accept": "text/html"}, follow_redirects=False)
    # (relative, or absolute when [api] base_url is set, as the stack does)
    login = urlsplit(page.headers["location"])
    assert page.status_code == 303 and login.path == "/auth/login/"
    assert unquote(login.query).endswith(unquote(f"/ecr-mirror{run}"))
    browser.get(f"{site.url}/ecr-mirror{run}")
    assert "/auth/login" in browser.current_url
    assert digest not in browser.page_source
    shot(browser, tmp_path, "login")


def test_the_run_page_shows_every_tag_with_its_digests(site: Site, browser: WebDriver, tmp_path: Path):
    run_id = site.team_runs[-1]
    login(browser, site, "admin", run_path(TEAM, run_id))
    assert unquote(browser.current_url).endswith(f"/ecr-mirror/dags/{TEAM}/runs/{run_id}")
    shown = rows(browser)
    shot(browser, tmp_path, "run")
    expected = site.records(TEAM, run_id)
    assert len(expected) == 4 and set(shown) == {f"{r.ecr_repository}:{r.tag}" for r in expected}
    for record in expected:
        row = shown[f"{record.ecr_repository}:{record.tag}"]
        ref, action, status, upstream, before, after, platforms, warmed, _ = row["text"]
        assert ref.startswith(f"{record.image}:{record.tag}") and record.ecr_repository in ref
        assert (action, status) == (record.action, record.status)
        digests = (record.upstream_digest, record.cached_digest_before, record.cached_digest_after)
        # each digest in full (to hover and copy), shown as registries print it: sha256 and 12 hex
        assert row["digests"][3:6] == [[d] if d else [] for d in digests]
        assert [upstream, before, after] == [d[:19] if d else "-" for d in digests]
        platform_digests = json.loads(record.platform_digests or "{}")
        assert row["digests"][6] == list(platform_digests.values())
        assert platforms.splitlines() == [f"{p} {d[:19]}" for p, d in platform_digests.items()]
        assert (warmed != "") == (record.warmed_bytes is not None)
        assert row["note"] == (record.error or "")
    by_tag = {k.split("/", 1)[1]: v for k, v in shown.items()}
    # what the run did, as the sandbox's upstream says it should have
    app_10 = by_tag["acme/web-app:1.0"]
    assert app_10["text"][1:3] == ["drifted", "stale"]
    assert app_10["digests"][3] == [site.upstream["acme/web-app", "1.0", "rebuilt"]]
    assert app_10["digests"][5] == [site.upstream["acme/web-app", "1.0", ""]]  # ECR still serves the old one
    assert "24 h" in app_10["note"]
    assert app_10["text"][6].startswith("linux/arm64 sha256:")
    tool_10 = by_tag["acme/web-tool:1.0"]
    assert tool_10["text"][1:3] == ["drifted", "pulled"]  # on_drift: evict-and-repull
    assert tool_10["text"][7].endswith("B")  # warm_layers: the bytes warmed through ECR
    assert tool_10["digests"][4:6] == [
        [site.upstream["acme/web-tool", "1.0", ""]],
        [site.upstream["acme/web-tool", "1.0", "rebuilt"]],
    ]
    assert by_tag["acme/web-tool:9.9"]["text"][2] == "failed"
    assert "not found upstream" in by_tag["acme/web-tool:9.9"]["note"]
    summary = browser.find_element(By.CSS_SELECTOR, "dl.summary").text
    assert "failed" in summary and "web-team" in summary


def test_filters_narrow_the_rows(site: Site, browser: WebDriver, tmp_path: Path):
    first, second = site.team_runs
    login(browser, site, "admin", run_path(TEAM, second))
    # a status box applies at once
    browser.find_element(By.CSS_SELECTOR, "form.filters input[value=failed]").click()
    WebDriverWait(browser, 10).until(lambda d: "status=failed" in d.current_url)
    assert list(rows(browser)) == ["team/acme/web-tool:9.9"]
    assert "1 of 4 tags" in browser.page_source
    # an image glob, typed and applied
    browser.get(f"{site.url}/ecr-mirror{run_path(TEAM, second)}")
    browser.find_element(By.NAME, "image").send_keys("*/web-app:?.0")
    browser.find_element(By.CSS_SELECTOR, "form.filters [type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "image=" in d.current_url)
    assert sorted(rows(browser)) == ["team/acme/web-app:1.0", "team/acme/web-app:2.0"]
    shot(browser, tmp_path, "run-filtered")
    # a substring, across runs, with a status: every stale tag of web-app
    browser.get(f"{site.url}/ecr-mirror/tags?image=WEB-APP&status=stale")
    assert [(k, v["text"][0].split("\n")[0]) for k, v in rows(browser).items()] == [
        ("team/acme/web-app:1.0", second)
    ]
    # the time range: every run is within the last hour, none before 2000
    browser.get(f"{site.url}/ecr-mirror/?last=1h")
    runs = {
        e.get_attribute("data-run-id")
        for e in browser.find_elements(By.CSS_SELECTOR, "table.runs tr[data-run-id]")
    }
    assert runs == {first, second, site.secret_run}
    browser.get(f"{site.url}/ecr-mirror/?until=2000-01-01")
    assert browser.find_elements(By.CSS_SELECTOR, "table.runs tr[data-run-id]") == []
    assert "No audit rows match these filters" in browser.page_source
    # a bad value is refused, naming the parameter
    browser.get(f"{site.url}/ecr-mirror/?since=yesterday")
    assert "since: 'yesterday' is not a time" in browser.page_source
    shot(browser, tmp_path, "bad-filter")


def test_the_manifest_overview_counts_runs_and_charts_tags_over_time(
    site: Site, browser: WebDriver, tmp_path: Path
):
    login(browser, site, "admin")
    shot(browser, tmp_path, "overview")
    sections = {
        s.get_attribute("data-dag-id"): s for s in browser.find_elements(By.CSS_SELECTOR, "section.manifest")
    }
    assert set(sections) == {TEAM, SECRET}
    team_runs = sections[TEAM].find_elements(By.CSS_SELECTOR, "tr[data-run-id]")
    assert [r.get_attribute("data-run-id") for r in team_runs] == list(
        reversed(site.team_runs)
    )  # newest first
    for tr, run_id in zip(team_runs, reversed(site.team_runs), strict=True):
        counts = {
            p.get_attribute("data-status"): int(p.find_element(By.TAG_NAME, "b").text)
            for p in tr.find_elements(By.CSS_SELECTOR, "a.pill")
        }
        records = site.records(TEAM, run_id)
        assert counts == {s: sum(r.status == s for r in records) for s in {r.status for r in records}}
        assert "failed" in tr.text
    # the chart's bars add up to the tags mirrored (pulled), stale and failed in every run
    every = [r for run in site.team_runs for r in site.records(TEAM, run)] + site.records(
        SECRET, site.secret_run
    )
    bars = browser.find_elements(By.CSS_SELECTOR, "figure.chart g.bar")
    assert bars
    for status in ("pulled", "stale", "failed"):
        charted = sum(int(b.get_attribute(f"data-{status}") or 0) for b in bars)
        assert charted == sum(r.status == status for r in every) > 0, status


def test_the_digest_history_of_a_tag(site: Site, browser: WebDriver, tmp_path: Path):
    first, second = site.team_runs
    login(browser, site, "admin", run_path(TEAM, second))
    browser.find_element(By.CSS_SELECTOR, "tr[data-tag='team/acme/web-tool:1.0'] td.ref a").click()
    WebDriverWait(browser, 10).until(lambda d: "/history" in d.current_url)
    shot(browser, tmp_path, "history")
    history = browser.find_elements(By.CSS_SELECTOR, "table.history tr[data-run-id]")
    assert [tr.get_attribute("data-run-id") for tr in history] == [second, first]
    newest, oldest = history
    assert "changed" in (newest.get_attribute("class") or "").split()  # evicted and re-pulled: the rebuild
    cached = [
        tr.find_elements(By.CSS_SELECTOR, "code.digest")[-1].get_attribute("data-digest") for tr in history
    ]
    assert cached == [
        site.upstream["acme/web-tool", "1.0", "rebuilt"],
        site.upstream["acme/web-tool", "1.0", ""],
    ]
    assert "changed" not in (oldest.get_attribute("class") or "")


def test_a_user_sees_only_the_dags_they_may_read(site: Site, browser: WebDriver, tmp_path: Path):
    secret = run_path(SECRET, site.secret_run)
    login(browser, site, "alice")
    shot(browser, tmp_path, "alice-overview")
    sections = [
        s.get_attribute("data-dag-id") for s in browser.find_elements(By.CSS_SELECTOR, "section.manifest")
    ]
    assert sections == [TEAM]
    assert SECRET not in browser.page_source
    browser.get(f"{site.url}/ecr-mirror/tags")
    assert rows(browser) and all(key.startswith("team/") for key in rows(browser))
    browser.get(f"{site.url}/ecr-mirror{secret}")
    shot(browser, tmp_path, "alice-forbidden")
    assert "403" in browser.find_element(By.TAG_NAME, "h1").text
    assert site.upstream["acme/secret-app", "1.0", ""] not in browser.page_source
    # the same through the API with alice's token, and the admin's for contrast
    assert site.get(f"{secret}?format=json", "alice").status_code == 403
    assert site.get(f"/dags/{SECRET}?format=json", "alice").status_code == 403
    history = "/history?format=json&repository=secret/acme/secret-app&tag=1.0"
    assert site.get(history, "alice").json()["history"] == []
    assert len(site.get(history, "admin").json()["history"]) == 1
    assert {m["dag_id"] for m in site.get("/?format=json", "alice").json()["manifests"]} == {TEAM}
    assert {m["dag_id"] for m in site.get("/?format=json", "admin").json()["manifests"]} == {TEAM, SECRET}
    tags = site.get("/tags?format=json", "alice").json()["tags"]
    assert tags and {t["dag_id"] for t in tags} == {TEAM}
    assert site.get(f"{secret}?format=json", "admin").json()["tags"][0]["status"] == "pulled"


def test_airflow_links_its_navigation_each_dag_and_each_run_to_the_audit(
    site: Site, browser: WebDriver, tmp_path: Path
):
    def wait_for(selector: str, within: WebDriver = browser) -> list[Any]:
        return WebDriverWait(within, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))

    def audit_frame(name: str) -> str:
        """Switch into the UI's iframe of the external view ``name``; its source URL."""
        frame = wait_for(f"iframe[title='{name}']")[0]
        src = str(frame.get_attribute("src"))
        browser.switch_to.frame(frame)
        return src

    run_id = site.team_runs[-1]
    login(browser, site, "admin")
    # the navigation entry opens the overview inside the Airflow UI
    browser.get(f"{site.url}/")
    nav = wait_for("a[href$='/plugin/ecr-mirror']")[0]
    assert nav.get_attribute("aria-label") == "ECR audit"
    nav.click()
    audit_frame("ECR audit")
    assert {s.get_attribute("data-dag-id") for s in wait_for("section.manifest")} == {TEAM, SECRET}
    browser.switch_to.default_content()
    # every DAG page has a tab with the DAG's runs
    browser.get(f"{site.url}/dags/{TEAM}")
    wait_for("a[href$='/plugin/ecr-mirror-dag']")[0].click()
    audit_frame("Tag audit")
    runs = [r.get_attribute("data-run-id") for r in wait_for("table.runs tr[data-run-id]")]
    assert runs == list(reversed(site.team_runs))
    browser.switch_to.default_content()
    # every run page has a tab with the run's tags
    browser.get(f"{site.url}{run_path(TEAM, run_id)}")
    tab = wait_for("a[href$='/plugin/ecr-mirror-run']")[0]
    assert tab.text == "Tag audit"
    tab.click()
    assert audit_frame("Tag audit").endswith(f"/ecr-mirror{run_path(TEAM, run_id)}")
    wait_for("table.tags tbody tr")
    assert len(rows(browser)) == len(site.records(TEAM, run_id))
    browser.switch_to.default_content()
    shot(browser, tmp_path, "airflow-run-tab")
