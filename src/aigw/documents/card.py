"""Business cards from their OCR text: name, title, company, emails, phones (normalised with `phonenumbers`),
websites and address."""

from __future__ import annotations

import re
from typing import Any

import phonenumbers

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_WEBSITE = re.compile(r"\b(?:https?://)?(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[a-z]{2,}(?:/\S*)?", re.I)
_TITLE_WORDS = re.compile(
    r"\b(?:ceo|cto|cfo|coo|founder|co-founder|president|director|manager|engineer|developer|designer|consultant|"
    r"officer|head|lead|partner|analyst|architect|specialist|associate|assistant|vp|vice|chief|owner|sales|"
    r"marketing|attorney|accountant|professor|doctor|nurse|agent|representative|coordinator|administrator|"
    r"directeur|directrice|gerente|geschäftsführer|leiter|ingénieur|ingeniero|ingenieur)\b",
    re.IGNORECASE,
)
_COMPANY_WORDS = re.compile(
    r"\b(?:inc|llc|ltd|limited|gmbh|ag|sa|sas|sarl|s\.?l|bv|plc|corp|corporation|company|co|group|labs?|"
    r"technologies|solutions|systems|studio|partners|holdings|industries|consulting|ventures)\b\.?",
    re.IGNORECASE,
)
_ADDRESS = re.compile(
    r"\d+\s+\w+.*\b(?:st|street|ave|avenue|rd|road|blvd|boulevard|dr|drive|ln|lane|way|ct|court|pl|place|suite|"
    r"floor|straße|strasse|str|rue|calle|avenida|rua)\b|\b\d{5}(?:-\d{4})?\b|\b[A-Z]{1,2}\d{1,2}[A-Z]?\s\d[A-Z]{2}\b",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^(?:tel|phone|mobile|mob|cell|fax|office|t|m|f|p|e|email|e-mail|web|w)\s*[.:]\s*", re.I)


def parse(text: str, region: str = "US") -> dict[str, Any]:
    """Fields of a business card; `region` is where numbers without a country code are assumed to be."""
    text = re.sub(r"\b(www\.|https?://)\s+", r"\1", text, flags=re.IGNORECASE)  # OCR often spaces after www.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    emails = list(dict.fromkeys(_EMAIL.findall(text)))
    phones = list(
        dict.fromkeys(
            phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            for match in phonenumbers.PhoneNumberMatcher(text, region)
        )
    )
    email_domains = {email.split("@", 1)[1].lower() for email in emails}
    websites = []
    for line in lines:
        if "@" in line:
            continue
        for match in _WEBSITE.finditer(_LABEL.sub("", line)):
            site = match.group().rstrip(".,")
            if re.search(
                r"\.(?:com|org|net|io|ai|co|de|fr|es|uk|us|eu|info|biz|dev|app)\b|www\.|https?://", site, re.I
            ):
                websites.append(site)
    contact = {*emails, *(site.lower() for site in websites)}
    rest = [
        line
        for line in lines
        if not _EMAIL.search(line)
        and not any(site.lower() in line.lower() for site in contact)
        and not _is_phone_line(line, region)
    ]
    address_lines = [line for line in rest if _ADDRESS.search(line)]
    rest = [line for line in rest if line not in address_lines]
    title = next((line for line in rest if _TITLE_WORDS.search(line)), "")
    company = next((line for line in rest if _COMPANY_WORDS.search(line) and line != title), "")
    name = next((line for line in rest if line not in (title, company) and _looks_like_name(line)), "")
    if not company:
        company = next((line for line in rest if line not in (title, name)), "")
        if not company and email_domains:
            company = next(iter(email_domains)).split(".")[0].capitalize()
    return {
        "full_name": name,
        "title": title,
        "company": company,
        "emails": emails,
        "phones": phones,
        "websites": list(dict.fromkeys(websites)),
        "address": ", ".join(address_lines),
    }


def _is_phone_line(line: str, region: str) -> bool:
    digits = sum(char.isdigit() for char in line)
    return (
        digits >= 7
        and any(True for _ in phonenumbers.PhoneNumberMatcher(line, region))
        and digits * 2 > len(re.sub(r"\W", "", line))
    )


def _looks_like_name(line: str) -> bool:
    words = line.split()
    return 2 <= len(words) <= 4 and not any(char.isdigit() for char in line) and all(w[:1].isupper() for w in words)
