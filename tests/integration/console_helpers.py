"""What the console's tests share: the console as an operator starts it, its users, a
browser (Debian's chromium through Selenium) and an HTTP client that signs in."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from stepstream.client import WorkflowClient
from stepstream.infra.operators import Role, add_user
from stepstream.streams.settings import Settings
from tests.waiting import repeat_until, wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts" / "console"
PASSWORD = "correct-horse-battery-staple"


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
            return answers(f"{base}/sign-in")

        assert repeat_until(up, bool, 60), f"the console did not answer: {log.read_text()}"
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    tenants: tuple[str, ...] | None


def add_users(settings: Settings, users: list[User]) -> None:
    """Added as `stepstream users add` adds them (PostgreSQL is shared by every test
    run: the names carry the run's token)."""

    async def go() -> None:
        connection = await asyncpg.connect(settings.database_url)
        try:
            for user in users:
                await add_user(connection, user.name, PASSWORD, user.role, user.tenants)
        finally:
            await connection.close()

    asyncio.run(go())


def start(settings: Settings, workflow: str, execution_id: str, tenant: str, **input_: Any) -> None:
    async def go() -> None:
        async with WorkflowClient(settings) as client:
            await client.start_workflow(workflow, input_, tenant, "ops", execution_id)
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


class _Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the sign-in's answer carries the cookie: read it, do not follow


def signed_in(settings: Settings, base: str, name: str) -> Callable[[str], str]:
    """A reader of console pages, as a new viewer of every tenant signed in."""
    add_users(settings, [User(name, Role.VIEWER, None)])
    form = urllib.parse.urlencode({"name": name, "password": PASSWORD}).encode()
    try:
        urllib.request.build_opener(_Stay).open(f"{base}/sign-in", form, timeout=30)
        raise AssertionError("sign-in did not redirect")
    except urllib.error.HTTPError as answer:
        assert answer.code == 303, answer.code
        cookie = answer.headers["Set-Cookie"].split(";")[0]

    def read(path: str) -> str:
        request = urllib.request.Request(f"{base}{path}", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.read().decode())

    return read


# A browser ------------------------------------------------------------------------


@contextlib.contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    found, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert found and driver, "chromium and chromedriver are needed: make browser installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = found
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def until(
    browser: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], timeout: float = 60
) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)


def sign_in(browser: webdriver.Chrome, base: str, name: str, password: str = PASSWORD) -> None:
    """Sign in through the form, as a person does (a new session for this user)."""
    browser.delete_all_cookies()
    browser.get(f"{base}/sign-in")
    form = browser.find_element(By.CSS_SELECTOR, "form.sign-in")
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "password").send_keys(password)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "nav .who"))


def screenshot(browser: webdriver.Chrome, workdir: Path, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for folder in (ARTIFACTS, workdir):
        browser.save_screenshot(str(folder / f"{name}.png"))


# An HTTP client -------------------------------------------------------------------


class Visitor:
    """An HTTP client signed in as one user: its session cookie and the CSRF token of
    its pages (redirects are not followed: the test sees each answer)."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base, self.http = base, http
        self.cookie = ""
        self.csrf = ""

    async def sign_in(self, name: str, password: str = PASSWORD) -> int:
        async with self.http.post(
            f"{self.base}/sign-in",
            data={"name": name, "password": password},
            allow_redirects=False,
        ) as answer:
            morsel = answer.cookies.get("stepstream_session")
            if morsel is not None:
                self.cookie = morsel.value
                page = await self.get("/executions")
                self.csrf = re.findall(r'name="csrf" value="([^"]+)"', page[1])[0]
            return answer.status

    async def get(self, path: str, **headers: str) -> tuple[int, str]:
        async with self.http.get(
            f"{self.base}{path}",
            headers={"Cookie": f"stepstream_session={self.cookie}", **headers},
            allow_redirects=False,
        ) as answer:
            return answer.status, await answer.text()

    async def post(self, path: str, csrf: bool = True, **form: str) -> tuple[int, str]:
        data = {**form, **({"csrf": self.csrf} if csrf else {})}
        async with self.http.post(
            f"{self.base}{path}",
            data=data,
            headers={"Cookie": f"stepstream_session={self.cookie}"},
            allow_redirects=False,
        ) as answer:
            return answer.status, await answer.text()
