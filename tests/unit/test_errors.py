"""Every domain error has its status: ``errors.failure_for`` translates each kind."""

from __future__ import annotations

import inspect

import grpc

from microposts_server import domain, errors


def test_every_domain_error_has_a_translator() -> None:
    kinds = [
        cls
        for _, cls in inspect.getmembers(domain, inspect.isclass)
        if issubclass(cls, domain.DomainError) and cls is not domain.DomainError
    ]
    assert kinds
    for kind in kinds:
        assert any(k in errors.TRANSLATORS for k in kind.__mro__), kind.__name__


def test_a_subclass_is_translated_as_its_parent() -> None:
    class Vanished(domain.NotFound):
        pass

    failure = errors.failure_for(Vanished("Micropost", "users/a/microposts/1"), "r1")
    assert failure.code is grpc.StatusCode.NOT_FOUND


DRIVER_TEXT = "store unavailable: OSError: [Errno 24] Too many open files: '/srv/db/x.db'"


def test_unavailable_tells_the_caller_a_plain_reason_and_the_request_id_only() -> None:
    failure = errors.failure_for(domain.Unavailable(DRIVER_TEXT), "rid-7")
    assert failure.code is grpc.StatusCode.UNAVAILABLE
    assert failure.message == "the store is unavailable; retry later (request id rid-7)"
    details = b"".join(d.SerializeToString() for d in failure.details)
    assert b"rid-7" in details  # the RequestInfo
    for leak in ("Errno", "OSError", "/srv/db", "open files"):
        assert leak not in failure.message
        assert leak.encode() not in details


def test_a_lasting_store_failure_tells_the_caller_no_driver_text_either() -> None:
    for full, code in ((True, "RESOURCE_EXHAUSTED"), (False, "INTERNAL")):
        failure = errors.failure_for(domain.StoreFailed(DRIVER_TEXT, full=full), "rid-8")
        assert failure.code.name == code
        assert failure.message.endswith("writes fail until an operator fixes it (request id rid-8)")
        assert "Errno" not in failure.message and "/srv/db" not in failure.message
