"""The operator console in a real browser (Debian's chromium through Selenium) against a
real worker, signed in as users of different roles and tenants: a DAG turning green live
with its timeline, a retry from an execution's page and one in bulk (recorded under the
signed-in name), a filter that survives a reload, the search box, a task answered, a
viewer who cannot act, another tenant's execution not found, the analytics page.
Screenshots of each page go to .artifacts/console/ (and the test's own directory)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select

from stepstream.infra.operators import Role
from stepstream.streams.settings import Settings
from tests.integration.console_helpers import (
    User,
    add_users,
    chromium,
    console_process,
    recorded,
    screenshot,
    sign_in,
    until,
)
from tests.integration.console_helpers import start as start_in
from tests.integration.workers import (
    FAILS_ONCE,
    SLOW_DIAMOND,
    definition,
    engine_env,
    prepare,
    running_worker,
)

APPROVAL = definition(
    {
        "id": "console-approval",
        "steps": [
            {
                "id": "approve",
                "human": {
                    "assignee": "input.manager",
                    "title": "Approve the boiler repair",
                    "form": {
                        "type": "object",
                        "required": ["approved"],
                        "properties": {
                            "approved": {"type": "boolean"},
                            "budget": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
            {"id": "order", "type": "noop", "dependsOn": ["approve"]},
        ],
    }
)


class Team:
    """The run's tenants and users: an operator and a viewer of tenant A, an operator of
    tenant B, an admin of every tenant."""

    def __init__(self, run_token: str) -> None:
        self.tenant_a, self.tenant_b = f"{run_token}-a", f"{run_token}-b"
        self.operator = User(f"olive-{run_token}", Role.OPERATOR, (self.tenant_a,))
        self.viewer = User(f"victor-{run_token}", Role.VIEWER, (self.tenant_a,))
        self.other = User(f"otto-{run_token}", Role.OPERATOR, (self.tenant_b,))
        self.admin = User(f"ada-{run_token}", Role.ADMIN, None)

    @property
    def users(self) -> list[User]:
        return [self.operator, self.viewer, self.other, self.admin]


@pytest.fixture(scope="module")
def console(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str, Path, Team]]:
    """A worker and a console on this run's topics. PostgreSQL is shared by every test
    run: tenants, users and executions carry the run's token."""
    env = engine_env(settings, f"test-{run_token}-console")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, SLOW_DIAMOND, FAILS_ONCE, APPROVAL))
    team = Team(run_token)
    add_users(engine, team.users)
    workdir = tmp_path_factory.mktemp("console")
    with (
        running_worker(engine, env, "console-w1", workdir),
        console_process(env, workdir / "console.log") as base,
    ):
        yield engine, base, workdir, team


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as chrome:
        yield chrome


def open_failed(
    browser: webdriver.Chrome, settings: Settings, base: str, execution_id: str, tenant: str
) -> None:
    """Start a fails-once execution, and open its page once it is recorded as failed."""
    start_in(settings, "fails-once", execution_id, tenant)
    recorded(settings, execution_id, "failed")
    browser.get(f"{base}/executions/{execution_id}")


def step_states(browser: webdriver.Chrome) -> dict[str, str]:
    return {
        node.get_attribute("data-step"): node.get_attribute("class").split()[-1]
        for node in browser.find_elements(By.CSS_SELECTOR, "svg.dag g[data-step]")
    }


def act(browser: webdriver.Chrome, form: str, **fields: str) -> None:
    """Fill an action form as an operator does, send it, and wait until the page it
    was on is gone: a click returns before the answer has loaded, and the page before
    may carry a message of its own (an earlier refusal), which must not be read as
    this action's."""
    scope = browser.find_element(By.CSS_SELECTOR, f"form.{form}")
    for name, value in fields.items():
        element = scope.find_element(By.NAME, name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)
    scope.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(browser, expected_conditions.staleness_of(scope))


def action_message(browser: webdriver.Chrome) -> str:
    """What the console says about the action just sent. A click on submit returns
    before the next page has loaded (a bulk action takes a while: it is paced), so the
    message is waited for, not looked up at once."""
    messages = until(browser, lambda b: b.find_elements(By.CLASS_NAME, "message"))
    return str(messages[0].text)


def replays_by(settings: Settings, execution_id: str) -> list[str]:
    async def go() -> list[str]:
        connection = await asyncpg.connect(settings.database_url)
        try:
            rows = await connection.fetch(
                "SELECT requested_by FROM workflow_replays WHERE execution_id = $1",
                execution_id,
            )
            return [row[0] for row in rows]
        finally:
            await connection.close()

    return asyncio.run(go())


def test_a_started_workflow_turns_green_live_and_its_timeline_shows_every_attempt(
    console: tuple[Settings, str, Path, Team], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir, team = console
    execution_id = f"{run_token}-console-live"
    start_in(settings, "slow-diamond", execution_id, team.tenant_a)
    recorded(settings, execution_id)
    sign_in(browser, base, team.operator.name)
    browser.get(f"{base}/executions/{execution_id}")
    browser.execute_script("window.notReloaded = true")
    until(browser, lambda b: step_states(b).get("b") == "running")
    screenshot(browser, workdir, "execution-running")
    until(browser, lambda b: set(step_states(b).values()) == {"completed"})
    assert browser.execute_script("return window.notReloaded === true")  # live, not reloaded
    until(browser, lambda b: b.find_element(By.ID, "status").text == "completed")
    recorded(settings, execution_id, "completed")
    browser.refresh()
    attempts = browser.find_elements(By.CSS_SELECTOR, "table.attempts tbody tr")
    assert len(attempts) == 4
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline g.attempt")
    assert sorted(b.get_attribute("data-step") for b in bars) == ["a", "b", "c", "d"]
    critical = browser.find_elements(By.CSS_SELECTOR, "svg.timeline g.attempt.critical")
    path = [c.get_attribute("data-step") for c in critical]
    assert path[0] == "a" and path[-1] == "d" and len(path) == 3, path  # through b or c
    took = {
        g.get_attribute("data-step"): g.find_element(By.CSS_SELECTOR, "text.duration").text
        for g in browser.find_elements(By.CSS_SELECTOR, "svg.dag g[data-step]")
    }
    assert took["b"].endswith(" s") and float(took["b"].split()[0]) >= 3.0, took
    screenshot(browser, workdir, "execution-timeline")


def test_a_failed_execution_is_retried_from_its_page_under_the_signed_in_name(
    console: tuple[Settings, str, Path, Team], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir, team = console
    execution_id = f"{run_token}-console-retry"
    sign_in(browser, base, team.operator.name)
    open_failed(browser, settings, base, execution_id, team.tenant_a)
    assert "failed" in browser.find_element(By.ID, "status").text
    assert browser.find_elements(By.NAME, "by") == []  # nobody types who they are
    screenshot(browser, workdir, "execution-failed")
    act(browser, "actions", action="retry", reason="fixed the card")
    assert f"retry requested by {team.operator.name} (run 1)" in action_message(browser)

    def completed(b: webdriver.Chrome) -> bool:
        b.refresh()
        return b.find_element(By.ID, "status").text == "completed"

    until(browser, completed)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.attempts tbody tr")]
    assert any(row.startswith("b 2 completed") for row in rows), rows
    assert replays_by(settings, execution_id) == [team.operator.name]  # the audit trail


def test_failed_executions_matching_a_filter_are_retried_in_bulk(
    console: tuple[Settings, str, Path, Team], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir, team = console
    ids = [f"{run_token}-console-bulk-{n}" for n in range(3)]
    for execution_id in ids:
        start_in(settings, "fails-once", execution_id, team.tenant_a, batch=f"B7-{run_token}")
    other = f"{run_token}-console-bulk-other-tenant"  # the same filter, tenant B's
    start_in(settings, "fails-once", other, team.tenant_b, batch=f"B7-{run_token}")
    for execution_id in [*ids, other]:
        recorded(settings, execution_id, "failed")
    sign_in(browser, base, team.operator.name)
    browser.get(f"{base}/executions?status=failed&input=batch%3DB7-{run_token}")
    listed = browser.find_elements(By.CSS_SELECTOR, "table.executions tbody tr[data-execution]")
    assert sorted(r.get_attribute("data-execution") for r in listed) == ids
    screenshot(browser, workdir, "executions-failed")
    act(browser, "bulk", reason="provider back")
    assert "for 3 of 3 failed executions" in action_message(browser)

    def all_completed(b: webdriver.Chrome) -> bool:
        b.get(f"{base}/executions?status=completed&input=batch%3DB7-{run_token}")
        rows = b.find_elements(By.CSS_SELECTOR, "table.executions tbody tr[data-execution]")
        return len(rows) == 3

    until(browser, all_completed)
    assert replays_by(settings, other) == []  # tenant B's was not the operator's to retry


def test_a_filter_survives_a_reload_and_the_search_box_finds_by_business_value(
    console: tuple[Settings, str, Path, Team], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir, team = console
    execution_id = f"{run_token}-console-filtered"
    start_in(settings, "fails-once", execution_id, team.tenant_a, batch=f"F1-{run_token}")
    recorded(settings, execution_id, "failed")
    sign_in(browser, base, team.viewer.name)
    browser.get(f"{base}/executions")
    form = browser.find_element(By.CSS_SELECTOR, "form.filters")
    form.find_element(By.NAME, "workflow").send_keys("fails-once")
    Select(form.find_element(By.NAME, "status")).select_by_value("failed")
    form.find_element(By.NAME, "input").send_keys(f"batch=F1-{run_token}")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(browser, lambda b: "workflow=fails-once" in b.current_url)
    browser.refresh()
    form = browser.find_element(By.CSS_SELECTOR, "form.filters")
    assert form.find_element(By.NAME, "workflow").get_attribute("value") == "fails-once"
    status = Select(form.find_element(By.NAME, "status")).first_selected_option
    assert status.get_attribute("value") == "failed"
    assert form.find_element(By.NAME, "input").get_attribute("value") == f"batch=F1-{run_token}"
    listed = browser.find_elements(By.CSS_SELECTOR, "table.executions tbody tr[data-execution]")
    assert [r.get_attribute("data-execution") for r in listed] == [execution_id]
    screenshot(browser, workdir, "executions-filtered")
    browser.get(f"{base}/tasks")  # the search box is on every page
    search = browser.find_element(By.CSS_SELECTOR, "nav form.search input[name=input]")
    search.send_keys(f"batch=F1-{run_token}")
    search.submit()
    until(browser, lambda b: "/executions?input=" in b.current_url)
    listed = browser.find_elements(By.CSS_SELECTOR, "table.executions tbody tr[data-execution]")
    assert [r.get_attribute("data-execution") for r in listed] == [execution_id]


def test_a_viewer_cannot_act_and_another_tenants_execution_is_not_found(
    console: tuple[Settings, str, Path, Team], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir, team = console
    execution_id = f"{run_token}-console-viewer"
    sign_in(browser, base, team.viewer.name)
    open_failed(browser, settings, base, execution_id, team.tenant_a)
    assert browser.find_element(By.ID, "status").text == "failed"
    assert browser.find_elements(By.CSS_SELECTOR, "form.actions") == []  # nothing to act with
    # The form an operator would have, sent from the viewer's own session: refused.
    sent = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const csrf = document.querySelector("input[name=csrf]").value;
        fetch(arguments[0], {method: "POST", body: new URLSearchParams({action: "retry", csrf}),
              redirect: "manual"}).then(r => done(r.status));""",
        f"{base}/executions/{execution_id}/actions",
    )
    assert sent == 403
    screenshot(browser, workdir, "viewer")
    sign_in(browser, base, team.other.name)  # an operator, of tenant B
    browser.get(f"{base}/executions/{execution_id}")
    assert f"no execution {execution_id} is recorded" in browser.page_source
    assert team.tenant_a not in browser.page_source
    browser.get(f"{base}/executions")
    assert execution_id not in browser.page_source
    assert replays_by(settings, execution_id) == []  # nothing was sent


def test_an_open_task_is_listed_and_answered_through_its_form(
    console: tuple[Settings, str, Path, Team], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir, team = console
    execution_id = f"{run_token}-console-task"
    manager = f"dana-{run_token}"
    start_in(settings, "console-approval", execution_id, team.tenant_a, manager=manager)
    sign_in(browser, base, team.operator.name)

    def listed(b: webdriver.Chrome) -> list[Any]:
        b.get(f"{base}/tasks?assignee={manager}")
        return b.find_elements(
            By.CSS_SELECTOR, f'table.tasks tr[data-task="{execution_id}/approve"]'
        )

    (row,) = until(browser, listed)
    assert manager in row.text and "Approve the boiler repair" in row.text
    screenshot(browser, workdir, "tasks")
    row.find_element(By.LINK_TEXT, "Approve the boiler repair").click()
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "form.answer"))
    act(browser, "answer", **{"field.approved": "true", "field.budget": "-5"})
    assert action_message(browser) == (
        "refused: the answer does not match the form: budget: -5 is less than the minimum of 0"
    )
    assert browser.find_element(By.ID, "task-status").text == "open", "nothing was sent"
    act(browser, "answer", **{"field.approved": "true", "field.budget": "800"})
    assert action_message(browser) == f"answered by {team.operator.name} (attempt 1)"
    recorded(settings, execution_id, "completed")

    def answered(b: webdriver.Chrome) -> bool:
        b.get(f"{base}/tasks/{execution_id}/approve")
        return b.find_element(By.ID, "task-status").text == "answered"

    until(browser, answered)
    assert (
        f"answered by {team.operator.name}"
        in browser.find_element(By.CSS_SELECTOR, "p.answered").text
    )
    screenshot(browser, workdir, "task-answered")


def test_the_analytics_dead_letters_and_figures_pages_and_sign_out(
    console: tuple[Settings, str, Path, Team], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir, team = console
    execution_id = f"{run_token}-console-analysed"
    start_in(settings, "slow-diamond", execution_id, team.tenant_a)
    recorded(settings, execution_id, "completed")
    sign_in(browser, base, team.operator.name)
    assert "figures" not in browser.find_element(By.TAG_NAME, "nav").text  # every tenant's
    browser.get(f"{base}/analytics/slow-diamond?since=24h")
    versions = browser.find_elements(By.CSS_SELECTOR, "table.versions tr[data-version]")
    assert versions and "completed" in versions[0].text
    steps = [
        r.get_attribute("data-step")
        for r in browser.find_elements(By.CSS_SELECTOR, "table.steps tr[data-step]")
    ]
    assert steps == ["a", "b", "c", "d"]
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg rect")  # bars drawn
    screenshot(browser, workdir, "analytics")
    sign_in(browser, base, team.admin.name)
    browser.get(f"{base}/figures")
    names = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.figures td:first-child")]
    assert names[:3] == [
        "cache hit rate: definitions",
        "cache hit rate: ai",
        "parallel execution rate",
    ]
    screenshot(browser, workdir, "figures")
    browser.get(f"{base}/users")
    listed = {
        row.get_attribute("data-user"): row.text
        for row in browser.find_elements(By.CSS_SELECTOR, "table.users tr[data-user]")
    }
    assert f"operator {team.tenant_a}" in listed[team.operator.name]
    assert "viewer" in listed[team.viewer.name]
    browser.get(f"{base}/dead-letters")
    assert browser.find_elements(By.CSS_SELECTOR, "form.redrive")  # an admin may re-drive
    screenshot(browser, workdir, "dead-letters")
    browser.find_element(By.CSS_SELECTOR, "form.sign-out button").click()
    until(browser, lambda b: "/sign-in" in b.current_url)
    browser.get(f"{base}/executions")
    assert "/sign-in" in browser.current_url  # the session is over
