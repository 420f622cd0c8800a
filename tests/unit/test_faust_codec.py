"""The Avro codec as Faust sees it, by its registered name."""

from __future__ import annotations

import pytest
from faust.serializers import codecs

from stepstream.schemas.codec import CorruptEvent, DecodedEvent
from stepstream.streams.codec import CODEC_NAME, register_codec
from tests.unit.test_codec import STEP_COMPLETED


def test_registered_codec_round_trips_events() -> None:
    register_codec()
    event = DecodedEvent("StepCompleted", dict(STEP_COMPLETED))
    data = codecs.dumps(CODEC_NAME, event)
    assert data[:2] == b"\xc3\x01"
    assert codecs.loads(CODEC_NAME, data) == event


def test_registered_codec_refuses_what_it_cannot_carry() -> None:
    register_codec()
    with pytest.raises(TypeError):
        codecs.dumps(CODEC_NAME, {"not": "an event"})
    with pytest.raises(CorruptEvent):
        codecs.loads(CODEC_NAME, b"plain bytes")
