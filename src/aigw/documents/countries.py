"""Country names for the three-letter codes in machine-readable zones (ISO 3166 alpha-3 plus ICAO's own)."""

from __future__ import annotations

import pycountry

# Codes ICAO 9303 uses that ISO 3166 does not, and the country names as people write them.
_ICAO = {
    "D": "Germany",
    "GBD": "United Kingdom (overseas territories citizen)",
    "GBN": "United Kingdom (national, overseas)",
    "GBO": "United Kingdom (overseas citizen)",
    "GBP": "United Kingdom (protected person)",
    "GBS": "United Kingdom (subject)",
    "UNO": "United Nations",
    "UNA": "United Nations (specialized agency)",
    "UNK": "Kosovo (UN interim administration)",
    "EUE": "European Union",
    "RKS": "Kosovo",
    "XXA": "Stateless person",
    "XXB": "Refugee",
    "XXC": "Refugee (other)",
    "XXX": "Unspecified nationality",
    "UTO": "Utopia",  # ICAO's specimen country
}


def country_name(code: str) -> str | None:
    """`USA` → `United States`; None for a code no table knows."""
    code = code.replace("<", "").upper()
    if code in _ICAO:
        return _ICAO[code]
    country = pycountry.countries.get(alpha_3=code)
    if country is None:
        return None
    return str(getattr(country, "common_name", None) or country.name)


def alpha_2(code: str) -> str | None:
    """The two-letter code (`USA` → `US`), used as the region for phone numbers."""
    country = pycountry.countries.get(alpha_3=code.replace("<", "").upper())
    return str(country.alpha_2) if country is not None else None
