"""String formats as regexes (JSON Schema "format").

Formats are regexes of their usual forms: date, time, date-time (RFC 3339, at most 9 fraction
digits), email (dot-atom local part, dotted domain), uuid (RFC 4122 text), uri / uri-reference
(RFC 3986 characters, scheme required for uri), iri / iri-reference (the same plus non-ASCII),
ipv4, ipv6, hostname (RFC 1123 labels), duration (RFC 3339 appendix A), json-pointer and
relative-json-pointer (RFC 6901). Since jsonschema does not check formats unless asked to, any
format restricts (never widens) what it accepts.
"""
from __future__ import annotations

from gateway.structured.grammar import Dfa
from gateway.structured.json_cache import shared
from gateway.structured.regex import regex_dfa

_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?([Zz]|[+\-]([01][0-9]|2[0-3]):[0-5][0-9])"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"({_H16}:{_H16}|{_IPV4})"
_IPV6 = "|".join([rf"({_H16}:){{6}}{_LS32}", rf"::({_H16}:){{5}}{_LS32}", rf"({_H16})?::({_H16}:){{4}}{_LS32}",
                  rf"(({_H16}:){{0,1}}{_H16})?::({_H16}:){{3}}{_LS32}", rf"(({_H16}:){{0,2}}{_H16})?::({_H16}:){{2}}{_LS32}",
                  rf"(({_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}", rf"(({_H16}:){{0,4}}{_H16})?::{_LS32}",
                  rf"(({_H16}:){{0,5}}{_H16})?::{_H16}", rf"(({_H16}:){{0,6}}{_H16})?::"])
_URI_CHARS = r"([A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*"
_IRI_CHARS = r"([A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2}|[^\x00-\x7F])*"
_N = "[0-9]+"
_DUR_TIME = rf"T({_N}H({_N}M({_N}S)?)?|{_N}M({_N}S)?|{_N}S)"
_DUR_DATE = rf"({_N}D|{_N}M({_N}D)?|{_N}Y({_N}M({_N}D)?)?)"
_POINTER = r"(/([^~/]|~[01])*)*"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
FORMATS = {
    "date": _DATE,
    "time": _TIME,
    "date-time": rf"{_DATE}[Tt]{_TIME}",
    "email": rf"{_ATOM}(\.{_ATOM})*@{_LABEL}(\.{_LABEL})+",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "uri": rf"[A-Za-z][A-Za-z0-9+.\-]*:{_URI_CHARS}",
    "uri-reference": rf"([A-Za-z][A-Za-z0-9+.\-]*:)?{_URI_CHARS}",
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "hostname": rf"{_LABEL}(\.{_LABEL})*",
    "iri": rf"[A-Za-z][A-Za-z0-9+.\-]*:{_IRI_CHARS}",
    "iri-reference": rf"([A-Za-z][A-Za-z0-9+.\-]*:)?{_IRI_CHARS}",
    "duration": rf"P({_DUR_DATE}({_DUR_TIME})?|{_DUR_TIME}|{_N}W)",
    "json-pointer": _POINTER,
    "relative-json-pointer": rf"(0|[1-9][0-9]*)(#|{_POINTER})",
}


@shared
def format_dfa(fmt: str) -> Dfa:
    return regex_dfa(FORMATS[fmt])
