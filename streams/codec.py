"""The Avro event codec registered with Faust as `stepstream-avro`.

Downstream Faust apps can read the public feeds with
`app.topic("stepstream.step-completed", value_serializer="stepstream-avro")` and get
`DecodedEvent`s; the engine sends through it. The engine's own agents consume raw bytes
and decode themselves, so that an event that fails to decode can be dead-lettered with
its partition and offset instead of being dropped inside Faust's deserialiser.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from stepstream.schemas.codec import CODEC, DecodedEvent

CODEC_NAME = "stepstream-avro"


class AvroEventCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, DecodedEvent):
            raise TypeError(f"{CODEC_NAME} encodes DecodedEvent values, not {type(obj).__name__}")
        return CODEC.encode(obj.name, obj.record)

    def _loads(self, data: bytes) -> Any:
        return CODEC.decode(data)


def register_codec() -> None:
    if CODEC_NAME not in codecs.codecs:
        codecs.register(CODEC_NAME, AvroEventCodec())
