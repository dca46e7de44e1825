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
