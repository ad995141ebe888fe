"""Fake user records for the load generator, in DynamoDB's low-level attribute-value format.

Every attribute type (S N B SS NS BS M L NULL BOOL) appears in every record, at the top level and
nested inside maps and lists, so a load exercises the whole type system the replicator must carry.
Values include non-ASCII text and bytes that are not UTF-8 (the double-encoding trap). Pure: all
randomness comes from the `random.Random` passed in, so a seed reproduces the same records.
"""

from __future__ import annotations

import random
from typing import Any

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

FIRST_NAMES = (
    "Wei", "Fang", "Li", "Jun", "Mei", "Hao", "Ana", "Lucas", "Amara", "Noah", "Priya", "Kenji",
    "Olga", "Mateo", "Zainab", "Ivan", "Siti", "Tomasz", "Aiko", "Chloé", "伟", "芳", "娜", "敏",
)  # fmt: skip
LAST_NAMES = (
    "Wang", "Li", "Zhang", "Liu", "Chen", "Tan", "Lim", "Nguyen", "Silva", "Okafor", "Kowalski",
    "Müller", "Sato", "Ivanova", "García", "O'Brien", "张", "王", "陈",
)  # fmt: skip
CITIES = (
    ("Beijing", "CN"), ("Shanghai", "CN"), ("Ningxia", "CN"), ("Singapore", "SG"),
    ("Tokyo", "JP"), ("Jakarta", "ID"), ("Sydney", "AU"), ("Frankfurt", "DE"), ("北京", "CN"),
)  # fmt: skip
STREETS = ("Chang'an Ave", "Orchard Rd", "Nanjing Rd", "Marina Blvd", "Shinjuku-dori", "中关村大街")
TAGS = ("vip", "beta", "mobile", "web", "churn-risk", "newsletter", "trial", "enterprise", "新用户")
SKILLS = ("go", "python", "sql", "dynamodb", "kinesis", "lambda", "k8s", "rust", "java")
THEMES = ("dark", "light", "system")
LANGUAGES = ("zh-CN", "en-SG", "en-US", "ja-JP", "ms-MY")
DOMAINS = ("example.com", "example.cn", "example.sg")
# The first bytes of a PNG file; the rest of a thumbnail is random, including 0x00 and 0xFF.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def s(value: str) -> AttributeValue:
    return {"S": value}


def n(value: int | str) -> AttributeValue:
    return {"N": str(value)}


def b(value: bytes) -> AttributeValue:
    return {"B": value}


def boolean(value: bool) -> AttributeValue:
    return {"BOOL": value}


def null() -> AttributeValue:
    return {"NULL": True}


def decimal_text(rng: random.Random, low: int, high: int, places: int) -> str:
    """A decimal number as DynamoDB text, exact (no float rounding)."""
    scale = 10**places
    value = rng.randint(low * scale, high * scale)
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), scale)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def thumbnail(rng: random.Random) -> bytes:
    return PNG_SIGNATURE + rng.randbytes(rng.randint(48, 160))


def user_record(rng: random.Random) -> Item:
    """One fake user: every attribute type at the top level and nested."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, country = rng.choice(CITIES)
    handle = f"{_ascii(first)}.{_ascii(last)}{rng.randint(1, 9999)}".lower()
    return {
        "name": s(f"{first} {last}"),
        "email": s(f"{handle}@{rng.choice(DOMAINS)}"),
        "age": n(rng.randint(16, 95)),
        "balance": n(decimal_text(rng, -500, 100000, 2)),
        "active": boolean(rng.random() < 0.8),
        "middle_name": null(),
        "avatar": b(thumbnail(rng)),
        "address": {
            "M": {
                "street": s(f"{rng.randint(1, 999)} {rng.choice(STREETS)}"),
                "city": s(city),
                "country": s(country),
                "postcode": s(f"{rng.randint(0, 999999):06d}"),
                "geo": {
                    "M": {
                        "lat": n(decimal_text(rng, -90, 90, 6)),
                        "lon": n(decimal_text(rng, -180, 180, 6)),
                    }
                },
                "verified": boolean(rng.random() < 0.5),
            }
        },
        "preferences": {"M": preferences(rng)},
        "tags": {"L": [s(tag) for tag in rng.sample(TAGS, rng.randint(1, 4))]},
        "skills": {"SS": sorted(rng.sample(SKILLS, rng.randint(1, 4)))},
        "lucky_numbers": {"NS": [str(x) for x in sorted(rng.sample(range(-50, 1000), rng.randint(1, 5)))]},
        "device_keys": {"BS": [rng.randbytes(8) for _ in range(rng.randint(1, 3))]},
        "history": {"L": [login_event(rng) for _ in range(rng.randint(1, 3))]},
    }


def preferences(rng: random.Random) -> Item:
    """A nested map holding every type again, including sets, NULL and a list of lists."""
    return {
        "theme": s(rng.choice(THEMES)),
        "font_scale": n(decimal_text(rng, 0, 3, 1)),
        "newsletter": boolean(rng.random() < 0.5),
        "languages": {"L": [s(lang) for lang in rng.sample(LANGUAGES, rng.randint(1, 3))]},
        "channels": {"SS": sorted(rng.sample(("email", "sms", "push", "wechat"), rng.randint(1, 3)))},
        "quiet_hours": {"NS": [str(h) for h in sorted(rng.sample(range(24), 2))]},
        "signing_keys": {"BS": [rng.randbytes(4), rng.randbytes(5)]},
        "banner": b(rng.randbytes(12)),
        "referrer": null(),
        "grid": {"L": [{"L": [n(rng.randint(0, 9)) for _ in range(3)]} for _ in range(2)]},
    }


def login_event(rng: random.Random) -> AttributeValue:
    return {
        "M": {
            "at": n(1_700_000_000 + rng.randint(0, 50_000_000)),
            "ip": s(".".join(str(rng.randint(1, 254)) for _ in range(4))),
            "ok": boolean(rng.random() < 0.9),
            "fingerprint": b(rng.randbytes(6)),
            "note": null(),
        }
    }


def profile_changes(rng: random.Random) -> Item:
    """Top-level attributes an update sets: a few of the record's fields with new values."""
    changes: Item = {
        "age": n(rng.randint(16, 95)),
        "active": boolean(rng.random() < 0.8),
    }
    if rng.random() < 0.5:
        changes["tags"] = {"L": [s(tag) for tag in rng.sample(TAGS, rng.randint(1, 4))]}
    if rng.random() < 0.5:
        changes["avatar"] = b(thumbnail(rng))
    if rng.random() < 0.3:
        changes["lucky_numbers"] = {"NS": [str(x) for x in sorted(rng.sample(range(1000), 3))]}
    return changes


def preference_changes(rng: random.Random) -> dict[str, Item]:
    """Members of the `preferences` map an update sets by nested path."""
    return {"preferences": {"theme": s(rng.choice(THEMES)), "newsletter": boolean(rng.random() < 0.5)}}


def _ascii(text: str) -> str:
    cleaned = "".join(ch for ch in text if ch.isascii() and ch.isalnum())
    return cleaned or "user"


def attribute_types(value: AttributeValue) -> set[str]:
    """Every type tag in a value, nested ones included (for tests and self-checks)."""
    found: set[str] = set()
    for tag, inner in value.items():
        found.add(tag)
        if tag == "M":
            for nested in inner.values():
                found |= attribute_types(nested)
        elif tag == "L":
            for nested in inner:
                found |= attribute_types(nested)
    return found
