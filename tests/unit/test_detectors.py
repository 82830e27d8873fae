"""Detection of sensitive identifiers: true positives, the false-positive rules, redaction."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_tools.core.errors import UsageError
from pipeline_tools.ops import detectors as d


def kinds(line: str) -> list[str]:
    return [h.kind for h in d.find(line)]


def values(line: str) -> list[tuple[str, str]]:
    return [(h.kind, line[h.start:h.end]) for h in d.find(line)]


def _jwt(header: dict, payload: dict) -> str:
    enc = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc(header)}.{enc(payload)}.c2lnbmF0dXJl"


@pytest.mark.parametrize("line, expected", [
    ("mail bob.smith+tag@mail.example.co.uk now", [("email", "bob.smith+tag@mail.example.co.uk")]),
    ("E.164 +14155552671 and +44 20 7946 0958", [("phone", "+14155552671"), ("phone", "+44 20 7946 0958")]),
    ("us (415) 555-2671 / 415-555-2671 / 415.555.2671",
     [("phone", "(415) 555-2671"), ("phone", "415-555-2671"), ("phone", "415.555.2671")]),
    ("from 203.0.113.42:8080", [("ipv4", "203.0.113.42")]),
    ("peer=2001:db8::8a2e:370:7334 fe80::1ff:fe23:4567:890a", [("ipv6", "2001:db8::8a2e:370:7334"),
                                                                ("ipv6", "fe80::1ff:fe23:4567:890a")]),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", [("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]),
    ("AWS_ACCESS_KEY_ID=ASIAY34FZKBOKMUTVV7A", [("aws_access_key_id", "ASIAY34FZKBOKMUTVV7A")]),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     [("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")]),
    ("visa 4111-1111-1111-1111, amex 3782 822463 10005, mc 5555555555554444",
     [("credit_card", "4111-1111-1111-1111"), ("credit_card", "3782 822463 10005"),
      ("credit_card", "5555555555554444")]),
    ("ssn: 078-05-1120.", [("us_ssn", "078-05-1120")]),
])
def test_true_positives(line, expected):
    assert values(line) == expected


def test_jwt_needs_a_json_header_with_alg():
    tok = _jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "42"})
    assert values(f"Authorization: {tok}") == [("jwt", tok)]
    not_jwt = _jwt({"kind": "x"}, {"sub": "42"})
    assert "jwt" not in kinds(f"cursor {not_jwt}")


@pytest.mark.parametrize("line", [
    # versions are not IPs
    "python 3.11.7", "lib v1.2.3.4", "pkg-1.2.3.4 installed", "release 1.2.3.4-beta", "build 1.2.3.4+g1a2b",
    "version=10.0.0.1", "ver: 10.0.0.1", "release=\"172.16.0.1\"", "four-part 1.2.3.4.5", "bad 256.1.1.1",
    "leading zero 010.001.002.003", "bind 0.0.0.0:80 and 127.0.0.1", "::1 loopback",
    # timestamps, durations and ids are not phone numbers
    "at 2026-11-27T22:22:26.123+00:00", "epoch 1732740000", "millis 1732740000123", "took 12:30:45",
    "date 2026-11-27 22:22:26", "tz +0100", "order 123-456-7890", "id 9876543210",
    # MACs and clock times are not IPv6; C++ scopes neither
    "mac aa:bb:cc:dd:ee:ff", "std::vector<int>", "time 10:20:30:40",
    # UUIDs, SHAs and digests are not cards or secrets
    f"request {uuid.UUID(int=0x12345678123412341234123456789012)}", "uuid 4111111111111111-aaaa",
    "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 secret", "4111111111111112 fails luhn",
    "1111111111111111 card", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    # 40 base64 chars with no secret context
    "request wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY done",
    # impossible SSNs
    "000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000",
    # not emails
    "user@localhost", "a@b", "pip install pkg==1.0 @ file:///x",
])
def test_false_positives(line):
    assert kinds(line) == []


def test_luhn():
    assert d.luhn_ok("4111111111111111") and d.luhn_ok("79927398713")
    assert not d.luhn_ok("4111111111111112")


def test_redact_never_contains_raw_values_and_merges_overlaps():
    line = "u=jane@example.com ip=203.0.113.7 ORD-1"
    extra = [d.Detector("order", __import__("re").compile(r"ORD-\d")),
             d.Detector("domain", __import__("re").compile(r"example\.com"))]
    hits = d.find(line, extra)
    out = d.redact(line, hits)
    assert out == "u=[REDACTED:email+domain] ip=[REDACTED:ipv4] [REDACTED:order]"


def test_redact_cuts_long_lines_around_first_hit():
    line = "x" * 1000 + " jane@example.com " + "y" * 1000
    out = d.redact(line, d.find(line), width=120)
    assert "[REDACTED:email]" in out and len(out) <= 122 and "jane" not in out


def test_load_patterns_yaml_and_json(tmp_path):
    y = tmp_path / "p.yml"
    y.write_text("patterns:\n  - name: order\n    regex: 'ORD-\\d+'\n")
    j = tmp_path / "p.json"
    j.write_text(json.dumps([{"name": "ticket", "regex": "TCK[0-9]{4}"}]))
    assert [p.name for p in d.load_patterns(y)] == ["order"]
    (ticket,) = d.load_patterns(j)
    assert kinds("see TCK1234") == [] and [h.kind for h in d.find("see TCK1234", [ticket])] == ["ticket"]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "x", "regex": "(?P<"}]')
    with pytest.raises(UsageError, match=r"entry 1 \(x\): bad regex") as ei:
        d.load_patterns(bad)
    assert ei.value.exit_code == 2
    with pytest.raises(UsageError, match="cannot read"):
        d.load_patterns(tmp_path / "missing.yml")


# --- properties -------------------------------------------------------------------------------

versions = st.tuples(*[st.integers(0, 300)] * 3).map(lambda t: ".".join(map(str, t)))
ipv4s = st.tuples(st.integers(1, 223), st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)) \
    .filter(lambda t: t[0] != 127).map(lambda t: ".".join(map(str, t)))


@settings(max_examples=200, deadline=None)
@given(versions, st.sampled_from(["python ", "v", "pkg-", "version ", ""]))
def test_three_part_versions_are_never_ips(v, prefix):
    assert not any(k.startswith("ip") for k in kinds(f"{prefix}{v} ready"))


@settings(max_examples=200, deadline=None)
@given(ipv4s, st.sampled_from(["-beta", "-rc1", "+build5", ".9"]))
def test_four_part_versions_with_suffix_are_not_ips(ip, suffix):
    assert "ipv4" not in kinds(f"release {ip}{suffix}")
    assert "ipv4" not in kinds(f"version={ip}")
    assert values(f"client {ip} connected") == [("ipv4", ip)]


@settings(max_examples=200, deadline=None)
@given(st.datetimes(), st.integers(0, 2**41))
def test_timestamps_and_epochs_are_not_phones_or_cards(ts, epoch_ms):
    for text in (ts.isoformat(), ts.strftime("%Y-%m-%d %H:%M:%S"), ts.strftime("%d/%m/%Y %H:%M"),
                 str(epoch_ms), str(epoch_ms // 1000)):
        assert not set(kinds(f"at {text} done")) & {"phone", "credit_card", "us_ssn", "ipv6"}, text


@settings(max_examples=200, deadline=None)
@given(st.uuids(), st.binary(min_size=20, max_size=20))
def test_uuids_and_git_shas_are_not_cards_or_secrets(u, sha):
    assert kinds(f"id {u} aws secret") == []
    assert kinds(f"aws secret key commit {sha.hex()}") == []
    assert kinds(f"aws secret key commit {sha.hex().upper()}") == []


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
       st.sampled_from(["jane@example.com", "4111 1111 1111 1111", "078-05-1120", "AKIAIOSFODNN7EXAMPLE"]))
def test_redacted_excerpt_never_contains_the_value(noise, secret):
    line = f"{noise} {secret} {noise}"
    hits = d.find(line)
    assert hits
    assert secret not in d.redact(line, hits, width=10_000)
