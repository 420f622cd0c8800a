"""faust correction 8: the livelock detector checks only partitions that are not paused,
so an idle worker stops logging false "has not sent fetch request" errors for the
changelog partitions it pauses on purpose."""

from __future__ import annotations

from types import MethodType, SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP

from stepstream.streams.faust_fixes import livelock_detector

SOURCE = TP("stepstream.step-completed", 0)
CHANGELOG = TP("stepstream-engine-executions-changelog", 0)


def consumer_with_a_paused_changelog() -> tuple[Any, list[TP]]:
    checked: list[TP] = []

    async def no_wait(_: float) -> None:
        return None

    consumer = SimpleNamespace(
        assignment=lambda: {SOURCE, CHANGELOG},
        _paused_partitions={CHANGELOG},
        should_stop=False,
        sleep=no_wait,
        verify_event_path=lambda now, tp: checked.append(tp),
    )
    return consumer, checked


async def test_faust_checks_paused_partitions_too() -> None:
    """What the correction is for: faust's own detector reports the paused changelog."""
    consumer, checked = consumer_with_a_paused_changelog()
    await MethodType(Consumer.verify_all_partitions_active, consumer)()
    assert set(checked) == {SOURCE, CHANGELOG}


async def test_the_correction_checks_only_partitions_that_are_read() -> None:
    consumer, checked = consumer_with_a_paused_changelog()
    await livelock_detector._verify_all_partitions_active(consumer)
    assert checked == [SOURCE]
