"""Keyed UIDs and date shifts (invariant 3: deterministic per enrolment)."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from dicom_service.deidentify import Pseudonymiser, derive_date_shift
from dicom_service.deidentify.pseudonyms import shift_da, shift_dt

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
ORIGINAL = "1.2.840.113619.2.55.3.604688119.868.1234567890.123"


def make(key: bytes = KEY_A, shift: int = -100) -> Pseudonymiser:
    return Pseudonymiser(key=key, pseudonym="ERN-7K2QX9M4TD", date_shift_days=shift)


def test_keyed_uid_is_deterministic_per_key() -> None:
    assert make().uid(ORIGINAL) == make().uid(ORIGINAL)
    assert make(KEY_A).uid(ORIGINAL) != make(KEY_B).uid(ORIGINAL)
    assert make().uid(ORIGINAL) != make().uid(ORIGINAL + ".1")


def test_keyed_uid_formula() -> None:
    import hmac

    mac = hmac.new(KEY_A, ORIGINAL.encode("ascii"), hashlib.sha256).digest()
    assert make().uid(ORIGINAL) == "2.25." + str(int.from_bytes(mac[:16], "big"))


def test_keyed_uid_is_not_an_unkeyed_hash() -> None:
    plain = hashlib.sha256(ORIGINAL.encode("ascii")).digest()
    for derived in (
        "2.25." + str(int.from_bytes(plain[:16], "big")),
        "2.25." + str(int(hashlib.md5(ORIGINAL.encode("ascii")).hexdigest(), 16)),
    ):
        assert make().uid(ORIGINAL) != derived


def test_keyed_uids_are_valid_and_short() -> None:
    rng = random.Random(7)
    p = make()
    for _ in range(2000):
        original = ".".join(str(rng.randrange(1, 10**9)) for _ in range(rng.randrange(2, 8)))
        uid = p.uid(original)
        assert len(uid) <= 64
        assert UID_RE.match(uid)
        assert uid.startswith("2.25.")


@pytest.mark.parametrize("hostile", ["", "not a uid", "1.2.\u00e9", "\udcff", "1" * 200])
def test_keyed_uid_maps_anything(hostile: str) -> None:
    uid = make().uid(hostile)
    assert UID_RE.match(uid) and len(uid) <= 64


def test_uid_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from dicom_service.deidentify import pseudonyms

    monkeypatch.setattr(pseudonyms, "_UID_CACHE_LIMIT", 10)
    p = make()
    first = p.uid("1.2.3")
    for i in range(50):
        p.uid(f"1.2.{i}")
    assert len(p._uid_cache) <= 10
    assert p.uid("1.2.3") == first


def test_repr_hides_key_and_cache() -> None:
    p = make()
    p.uid(ORIGINAL)
    text = repr(p)
    assert "key" not in text and ORIGINAL not in text and str(KEY_A) not in text
    assert "ERN-7K2QX9M4TD" in text


def test_equal_and_hashable() -> None:
    a, b = make(), make()
    a.uid(ORIGINAL)
    assert a == b and hash(a) == hash(b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": b"short"}, "key must be 32 bytes"),
        ({"pseudonym": ""}, "pseudonym must be"),
        ({"pseudonym": "Doe^Jane"}, "pseudonym must be"),
        ({"pseudonym": "A" * 65}, "pseudonym must be"),
        ({"date_shift_days": 10**6}, "date_shift_days"),
    ],
)
def test_invalid_material_is_refused_without_echo(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"key": KEY_A, "pseudonym": "ERN-1", "date_shift_days": -40}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message) as info:
        Pseudonymiser(**args)  # type: ignore[arg-type]
    for value in kwargs.values():
        if isinstance(value, str) and value:
            assert value not in str(info.value)


def test_derive_date_shift() -> None:
    rng = random.Random(11)
    shifts = [derive_date_shift(rng.randbytes(32)) for _ in range(500)]
    assert all(-3650 <= s <= -30 for s in shifts)
    assert len(set(shifts)) > 400
    assert derive_date_shift(KEY_A) == derive_date_shift(KEY_A)


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20240315", -100, "20231206"),
        ("20240301", -1, "20240229"),
        ("20240315 ", 0, "20240315"),
        ("", -5, ""),
        ("   ", -5, ""),
        ("20240315\\20240316", 1, "20240316\\20240317"),
        ("2024.03.15", -1, ""),  # retired form: never passed through
        ("20241315", -1, ""),
        ("ABCDEFGH", -1, ""),
        ("00010101", -1, ""),
        ("99991231", 1, ""),
    ],
)
def test_shift_da(value: str, days: int, expected: str) -> None:
    assert shift_da(value, days) == expected


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20240315123456", -100, "20231206123456"),
        ("20240315123456.123456+0100", -1, "20240314123456.123456+0100"),
        ("202403", -31, "202402"),
        ("2024", -1, "2024"),
        ("2024", -200, "2023"),
        ("20240315", 1, "20240316"),
        ("2024031512", 1, "2024031612"),
        ("", 3, ""),
        ("20240315126000", 1, ""),
        ("20240315123456.1", 0, "20240315123456.1"),
        ("2024031512.5", 0, ""),
        ("garbage", 0, ""),
    ],
)
def test_shift_dt(value: str, days: int, expected: str) -> None:
    assert shift_dt(value, days) == expected


def test_pseudonymiser_shift_uses_its_offset() -> None:
    p = make(shift=-10)
    assert p.shift_date("20240315") == "20240305"
    assert p.shift_datetime("20240315101010") == "20240305101010"
