"""The operator console in a real browser (Debian's chromium through Selenium) against a
real worker: a DAG turning green live, a retry from an execution's page, a bulk retry by
filter, a filter that survives a reload, an action refused without the token.
Screenshots of each page go to .artifacts/console/ (and the test's own directory)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from stepstream.client import WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import (
    FAILS_ONCE,
    SLOW_DIAMOND,
    definition,
    engine_env,
    prepare,
    running_worker,
)
from tests.waiting import repeat_until, wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts" / "console"
TOKEN = "s3cret-operator-token"
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def console_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """`stepstream console` as an operator starts it; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stepstream", "console", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            return answers(f"{base}/executions")

        assert repeat_until(up, bool, 60), f"the console did not answer: {log.read_text()}"
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def console(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str, Path]]:
    """A worker and a console on this run's topics. PostgreSQL is shared by every test
    run: the tests name their executions and business values with the run's token."""
    env = engine_env(settings, f"test-{run_token}-console", STEPSTREAM_CONSOLE_TOKEN=TOKEN)
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, SLOW_DIAMOND, FAILS_ONCE, APPROVAL))
    workdir = tmp_path_factory.mktemp("console")
    with (
        running_worker(engine, env, "console-w1", workdir),
        console_process(env, workdir / "console.log") as base,
    ):
        yield engine, base, workdir


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromedriver are needed: make browser installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def screenshot(browser: webdriver.Chrome, workdir: Path, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for folder in (ARTIFACTS, workdir):
        browser.save_screenshot(str(folder / f"{name}.png"))


def until(
    browser: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], timeout: float = 60
) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)


def start(settings: Settings, workflow: str, execution_id: str, **input_: Any) -> None:
    async def go() -> None:
        async with WorkflowClient(settings) as client:
            await client.start_workflow(workflow, input_, "tenant-c", "ops", execution_id)
            await client.flush()

    asyncio.run(go())


def recorded(settings: Settings, execution_id: str, status: str | None = None) -> None:
    """Wait until PostgreSQL has the execution (the persister trails the topics)."""

    async def go() -> None:
        async with WorkflowClient(settings, follow_outcomes=False) as client:

            async def seen() -> bool:
                record = await client.describe(execution_id)
                return record is not None and (status is None or record.status == status)

            await wait_until(seen, 60, f"{execution_id} recorded as {status}")

    asyncio.run(go())


def open_failed(
    browser: webdriver.Chrome, settings: Settings, base: str, execution_id: str
) -> None:
    """Start a fails-once execution, and open its page once it is recorded as failed."""
    start(settings, "fails-once", execution_id)
    recorded(settings, execution_id, "failed")
    browser.get(f"{base}/executions/{execution_id}")


def step_states(browser: webdriver.Chrome) -> dict[str, str]:
    return {
        node.get_attribute("data-step"): node.get_attribute("class").split()[-1]
        for node in browser.find_elements(By.CSS_SELECTOR, "svg.dag g[data-step]")
    }


def act(browser: webdriver.Chrome, form: str, token: str = TOKEN, **fields: str) -> None:
    """Fill an action form as an operator does, and send it."""
    scope = browser.find_element(By.CSS_SELECTOR, f"form.{form}")
    for name, value in {"by": "ops", "token": token, **fields}.items():
        element = scope.find_element(By.NAME, name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)
    scope.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def action_message(browser: webdriver.Chrome) -> str:
    """What the console says about the action just sent. A click on submit returns
    before the next page has loaded (a bulk action takes a while: it is paced), so the
    message is waited for, not looked up at once."""
    messages = until(browser, lambda b: b.find_elements(By.CLASS_NAME, "message"))
    return str(messages[0].text)


def test_a_started_workflow_turns_green_live(
    console: tuple[Settings, str, Path], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir = console
    execution_id = f"{run_token}-console-live"
    start(settings, "slow-diamond", execution_id)
    recorded(settings, execution_id)
    browser.get(f"{base}/executions/{execution_id}")
    browser.execute_script("window.notReloaded = true")
    until(browser, lambda b: step_states(b).get("b") == "running")
    screenshot(browser, workdir, "execution-running")
    until(browser, lambda b: set(step_states(b).values()) == {"completed"})
    assert browser.execute_script("return window.notReloaded === true")  # live, not reloaded
    until(browser, lambda b: b.find_element(By.ID, "status").text == "completed")
    browser.refresh()
    screenshot(browser, workdir, "execution-completed")
    attempts = browser.find_elements(By.CSS_SELECTOR, "table.attempts tbody tr")
    assert len(attempts) == 4


def test_a_failed_execution_is_retried_from_its_page(
    console: tuple[Settings, str, Path], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir = console
    execution_id = f"{run_token}-console-retry"
    open_failed(browser, settings, base, execution_id)
    assert "failed" in browser.find_element(By.ID, "status").text
    screenshot(browser, workdir, "execution-failed")
    act(browser, "actions", action="retry", reason="fixed the card")
    assert "retry requested by ops (run 1)" in action_message(browser)

    def completed(b: webdriver.Chrome) -> bool:
        b.refresh()
        return b.find_element(By.ID, "status").text == "completed"

    until(browser, completed)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.attempts tbody tr")]
    assert any(row.startswith("b 2 completed") for row in rows), rows


def test_failed_executions_matching_a_filter_are_retried_in_bulk(
    console: tuple[Settings, str, Path], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir = console
    ids = [f"{run_token}-console-bulk-{n}" for n in range(3)]
    for execution_id in ids:
        start(settings, "fails-once", execution_id, batch=f"B7-{run_token}")
    for execution_id in ids:
        recorded(settings, execution_id, "failed")
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


def test_a_filter_survives_a_reload(
    console: tuple[Settings, str, Path], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir = console
    execution_id = f"{run_token}-console-filtered"
    start(settings, "fails-once", execution_id, batch=f"F1-{run_token}")
    recorded(settings, execution_id, "failed")
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


def test_an_action_without_the_token_is_refused(
    console: tuple[Settings, str, Path], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir = console
    execution_id = f"{run_token}-console-refused"
    open_failed(browser, settings, base, execution_id)
    act(browser, "actions", token="not-the-token", action="retry")
    # The click returns before the answer's page has loaded: wait for it, as for messages.
    refusals = until(browser, lambda b: b.find_elements(By.CLASS_NAME, "refused"))
    assert refusals[0].text == "refused: wrong operator token"
    screenshot(browser, workdir, "refused")
    browser.get(f"{base}/executions/{execution_id}")
    assert browser.find_element(By.ID, "status").text == "failed"  # nothing was sent
    request = urllib.request.Request(
        f"{base}/executions/{execution_id}/actions",
        data=b"action=retry&by=ops",  # no token at all
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_the_dead_letters_and_figures_pages(
    console: tuple[Settings, str, Path], browser: webdriver.Chrome
) -> None:
    _, base, workdir = console
    browser.get(f"{base}/figures")
    names = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.figures td:first-child")]
    assert names[:3] == [
        "cache hit rate: definitions",
        "cache hit rate: ai",
        "parallel execution rate",
    ]
    screenshot(browser, workdir, "figures")
    browser.get(f"{base}/dead-letters")
    assert browser.find_elements(By.CSS_SELECTOR, "form.redrive")  # the token is configured
    screenshot(browser, workdir, "dead-letters")


def test_an_open_task_is_listed_and_answered_through_its_form(
    console: tuple[Settings, str, Path], browser: webdriver.Chrome, run_token: str
) -> None:
    settings, base, workdir = console
    execution_id = f"{run_token}-console-task"
    manager = f"dana-{run_token}"
    start(settings, "console-approval", execution_id, manager=manager)

    def listed(b: webdriver.Chrome) -> list[Any]:
        b.get(f"{base}/tasks?tenant=tenant-c&assignee={manager}")
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
    screenshot(browser, workdir, "task-refused")
    act(browser, "answer", **{"field.approved": "true", "field.budget": "800"})
    assert action_message(browser) == "answered by ops (attempt 1)"
    recorded(settings, execution_id, "completed")

    def answered(b: webdriver.Chrome) -> bool:
        b.get(f"{base}/tasks/{execution_id}/approve")
        return b.find_element(By.ID, "task-status").text == "answered"

    until(browser, answered)
    assert "answered by ops" in browser.find_element(By.CSS_SELECTOR, "p.answered").text
    screenshot(browser, workdir, "task-answered")
