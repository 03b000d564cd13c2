"""Personal data and secrets out of training text.

The log masker's rules (``observability.logging.mask_text``: chatgate keys, JWTs, bearer
tokens, ``password=…``, URL credentials, e-mails) plus what a log line rarely holds but a
chat often does: whole e-mail addresses, phone numbers, other vendors' API keys and IP
addresses. A model trained on the text would otherwise be able to repeat them. Each kind
becomes a fixed placeholder, and the counts per kind go into the dataset's metadata.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

from chatgate.observability.logging import mask_text

EMAIL = re.compile(r"(?<![\w.+\-])[\w.+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}\b")
API_KEY = re.compile(
    r"\b(?:"
    r"sk-(?:proj-|ant-|cg-)?[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic, chatgate
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|glpat-[A-Za-z0-9_\-]{20,}"  # GitLab
    r")"
)
# Grouped digits as phone numbers are written: optional +country code, an area or
# operator part (maybe in parentheses), then two groups of 3-4 and 4 digits. Dates
# (2026-12-07), versions and plain long numbers do not have that shape.
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{1,4}\)[\s.\-]?|\d{2,4}[\s.\-])\d{3,4}[\s.\-]\d{4}(?![\w])"
)
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
# Candidates only: ipaddress decides (so "12:30:45" and "a:b" stay text).
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

PLACEHOLDERS = {
    "email": "[email]",
    "api_key": "[api_key]",
    "phone": "[phone]",
    "ip": "[ip]",
}


def _is_ipv6(text: str) -> bool:
    """An IPv6 address as written in text: with a digit, so ``a::b`` (C++, Rust) stays."""
    return any(char.isdigit() for char in text) and _is_ip(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _substitute(
    pattern: re.Pattern[str],
    kind: str,
    text: str,
    counts: Counter[str],
    keep: Callable[[str], bool] = lambda _match: True,
) -> str:
    def replace(match: re.Match[str]) -> str:
        if not keep(match.group(0)):
            return match.group(0)
        counts[kind] += 1
        return PLACEHOLDERS[kind]

    return pattern.sub(replace, text)


def scrub(text: str, counts: Counter[str] | None = None) -> str:
    """``text`` without e-mails, API keys, phone numbers, IPs and the log masker's secrets.

    ``counts`` (if given) adds up the replacements per kind; the log masker's own rules
    count as ``secret`` when they changed the text.
    """
    counts = counts if counts is not None else Counter()
    text = _substitute(API_KEY, "api_key", text, counts)
    text = _substitute(EMAIL, "email", text, counts)
    text = _substitute(IPV4, "ip", text, counts, _is_ip)
    text = _substitute(IPV6, "ip", text, counts, _is_ipv6)
    text = _substitute(PHONE, "phone", text, counts)
    masked = mask_text(text)
    if masked != text:
        counts["secret"] += 1
    return masked
