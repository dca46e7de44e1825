"""Request decoding that names what is wrong instead of failing as UNKNOWN.

grpc.aio turns a request it cannot deserialize into ``UNKNOWN``; we register
our methods with raw bytes in and decode here, so a bad request is an
``INVALID_ARGUMENT`` naming the field (for invalid UTF-8 in a string field,
the field's path, found by walking the wire format).
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from .domain import InvalidArgument

M = TypeVar("M", bound=Message)


def decode(message_type: type[M], raw: bytes) -> M:
    """Parses ``raw``; raises InvalidArgument naming the bad field if it cannot."""
    try:
        return message_type.FromString(raw)
    except (DecodeError, ValueError, RuntimeError):
        pass
    path = _bad_utf8_path(raw, message_type.DESCRIPTOR, "")  # type: ignore[arg-type]
    if path is not None:
        raise InvalidArgument.one(path, "is not valid UTF-8")
    raise InvalidArgument.one(
        "request", f"is not a valid {message_type.DESCRIPTOR.full_name} message"
    )


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise IndexError
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _bad_utf8_path(data: bytes, descriptor: Descriptor, prefix: str) -> str | None:
    """The path of the first string field holding invalid UTF-8, if any."""
    seen: dict[int, int] = {}
    pos = 0
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            number, wire_type = tag >> 3, tag & 7
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            elif wire_type == 2:
                length, pos = _varint(data, pos)
                chunk, pos = data[pos : pos + length], pos + length
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                path = prefix + field.name
                if _is_repeated(field):
                    index = seen.get(number, 0)
                    seen[number] = index + 1
                    path += f"[{index}]"
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return path
                elif field.type == FieldDescriptor.TYPE_MESSAGE:
                    found = _bad_utf8_path(chunk, field.message_type, path + ".")  # type: ignore[arg-type]
                    if found is not None:
                        return found
            else:
                return None
    except IndexError:
        return None
    return None


def _is_repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)  # type: ignore[attr-defined]
