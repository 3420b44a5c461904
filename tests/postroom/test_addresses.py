"""Address normalisation: the form we store, the same each time, and errors that name the
field they came from, however often the address was seen."""

from __future__ import annotations

import pytest

from postroom.addresses import normalize_address
from postroom.errors import InvalidAddress


def test_the_domain_is_lowercased_and_the_local_part_kept() -> None:
    assert normalize_address("Carol.Smith@Corp.TEST") == "Carol.Smith@corp.test"
    assert normalize_address("Carol.Smith@Corp.TEST") == "Carol.Smith@corp.test"


def test_an_invalid_address_is_refused_each_time_naming_that_field() -> None:
    for field in ("to[0]", "cc[3]"):
        with pytest.raises(InvalidAddress) as caught:
            normalize_address("no-at-sign.test", field=field)
        assert caught.value.field == field
        assert "no-at-sign.test" in caught.value.message


def test_a_control_character_is_refused_before_anything_is_remembered() -> None:
    assert normalize_address("dave@corp.test") == "dave@corp.test"
    with pytest.raises(InvalidAddress, match="control character"):
        normalize_address("dave@corp.test\r\nBcc: eve@evil.test", field="to[1]")
