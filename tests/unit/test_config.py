"""Settings errors: they name the setting and never echo a secret; protected mode's rule."""

from __future__ import annotations

import pytest

from microposts_server import config


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresq://svc:s3cret@db.internal/microposts", "svc:***@db.internal"),  # a typo
        ("mysql://svc:s3cret@db.internal/m?sslmode=require", "svc:***@db.internal"),
        ("mysql://db.internal/m?user=svc&password=s3cret", "password=***"),
    ],
)
def test_a_bad_store_url_is_named_without_its_password(url: str, shown: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(["--store", url], env={})
    message = str(caught.value)
    assert message.startswith("--store: expected a store URL, got ")
    assert shown in message
    assert "s3cret" not in message


def test_a_bad_store_url_from_the_environment_is_named_without_its_password() -> None:
    env = {"MICROPOSTS_STORE": "postgresq://svc:s3cret@db/m"}
    with pytest.raises(config.ConfigError) as caught:
        config.parse([], env=env)
    assert str(caught.value).startswith("MICROPOSTS_STORE: expected a store URL")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1:0", False),
        ("127.8.9.10:50051", False),
        ("localhost:50051", False),
        ("[::1]:50051", False),
        ("0.0.0.0:50051", True),
        ("[::]:50051", True),
        ("10.1.2.3:50051", True),
        ("api.example.com:50051", True),  # a name may resolve to anything
    ],
)
def test_protected_mode_refuses_only_addresses_off_this_machine(
    address: str, refused: bool
) -> None:
    if not refused:
        assert config.parse(["--address", address], env={}).address == address
        return
    with pytest.raises(config.ConfigError, match="is not a loopback address"):
        config.parse(["--address", address], env={})
    assert config.parse(["--address", address, "--insecure"], env={}).insecure
