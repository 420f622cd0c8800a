"""Templates with the command line on the real services: register a template, a workflow
that uses it (expanded, planned with where each step came from, run), a workflow made
from a template alone; parameters checked at the use site; versions immutable and never
changing what was registered before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stepstream.client.workflow_client import Outcome, WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import cli, engine_env, prepare, running_worker

TEMPLATE = """\
kind: template
id: notify-block-{token}
version: {version}
params:
  channel: {{type: string, default: email}}
  urgent: {{type: boolean}}
steps:
  - {{id: pick, type: noop, config: {{channel: "${{channel}}", urgent: "${{urgent}}"}}}}
  - {{id: send, type: noop, dependsOn: [pick], when: "has(steps.pick.step)"}}
{extra}"""

WORKFLOW = """\
id: uses-block-{token}
steps:
  - {{id: create, type: noop}}
  - id: notify
    use: {{template: notify-block-{token}, version: 1, params: {params}}}
    dependsOn: [create]
  - {{id: close, type: noop, dependsOn: [notify]}}
"""

Engine = tuple[Settings, dict[str, str], Path, str]


@pytest.fixture(scope="module")
def engine(settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    env = engine_env(settings, f"test-{run_token}-templates")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine))
    return engine, env, tmp_path_factory.mktemp("templates"), f"{time.time_ns()}"


def write(workdir: Path, name: str, text: str) -> str:
    path = workdir / name
    path.write_text(text)
    return str(path)


async def run(settings: Settings, workflow_id: str) -> Outcome:
    async with WorkflowClient(settings) as client:
        execution_id = await client.start_workflow(workflow_id, {}, "t", "u")
        return await client.wait_for(execution_id, timeout=90)


def test_a_workflow_uses_a_template_and_runs_its_steps(engine: Engine) -> None:
    settings, env, workdir, token = engine
    template = write(workdir, "t1.yaml", TEMPLATE.format(token=token, version=1, extra=""))
    registered = cli(env, "register", template)
    assert registered.returncode == 0, registered.stderr
    assert f"registered: template notify-block-{token} version 1" in registered.stdout
    again = cli(env, "register", template)
    assert f"already registered: template notify-block-{token} version 1" in again.stdout
    changed = TEMPLATE.format(token=token, version=1, extra="  - {id: more, type: noop}\n")
    refused = cli(env, "register", write(workdir, "t1b.yaml", changed))
    assert refused.returncode == 2 and "already registered with another body" in refused.stderr

    workflow = write(workdir, "w.yaml", WORKFLOW.format(token=token, params="{urgent: true}"))
    planned = cli(env, "plan", workflow)
    assert planned.returncode == 0, planned.stderr
    assert "notify.send [noop] after notify.pick when has(steps['notify.pick'].step)" in (
        planned.stdout
    )
    assert f"from template notify-block-{token} v1 steps[1] (send)" in planned.stdout
    assert cli(env, "register", workflow).returncode == 0
    # A new template version changes nothing registered before it.
    v2 = TEMPLATE.format(token=token, version=2, extra="  - {id: more, type: noop}\n")
    assert cli(env, "register", write(workdir, "t2.yaml", v2)).returncode == 0
    with running_worker(settings, env, f"templates-{token}", workdir):
        outcome = asyncio.run(run(settings, f"uses-block-{token}"))
    assert outcome.status == "completed", outcome.record
    assert set(outcome.outputs) == {"create", "notify.pick", "notify.send", "close"}


def test_parameters_are_checked_where_the_template_is_used(engine: Engine) -> None:
    _, env, workdir, token = engine
    template = TEMPLATE.format(token=token, version=1, extra="")
    assert cli(env, "register", write(workdir, "t.yaml", template)).returncode in (0, 2)
    bad = WORKFLOW.format(token=token, params="{urgent: maybe, colour: red}").replace(
        "uses-block", "bad-use"
    )
    refused = cli(env, "register", write(workdir, "bad.yaml", bad))
    assert refused.returncode == 2
    assert "steps[1] (notify).use.params.urgent: must be a boolean, got 'maybe'" in refused.stderr
    assert "steps[1] (notify).use.params.colour" in refused.stderr
    assert "has no such parameter" in refused.stderr


def test_a_template_becomes_a_workflow_of_its_own(engine: Engine) -> None:
    settings, env, workdir, token = engine
    template = TEMPLATE.format(token=token, version=1, extra="")
    cli(env, "register", write(workdir, "t.yaml", template))
    name = f"own-{token}"
    made = cli(
        env,
        "register",
        "--from-template",
        f"notify-block-{token}",
        "--template-version",
        "1",
        "--param",
        "urgent=false",
        "--param",
        "channel=sms",
        "--id",
        name,
    )
    assert made.returncode == 0, made.stderr
    assert f"registered: {name} version 1" in made.stdout
    missing = cli(env, "register", "--from-template", f"notify-block-{token}", "--id", "x")
    assert missing.returncode == 2 and "--param.urgent: is required by template" in missing.stderr
    with running_worker(settings, env, f"templates-own-{token}", workdir):
        outcome = asyncio.run(run(settings, name))
    assert outcome.status == "completed", outcome.record
    assert set(outcome.outputs) == {"pick", "send"}
