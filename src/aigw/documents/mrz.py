"""ICAO 9303 machine-readable zones: find them in OCR text, repair what OCR gets wrong, check every digit.

Three layouts exist: TD3 (passports, 2 lines of 44), TD2 (2 of 36) and TD1 (ID cards, 3 of 30). Each field has a
known alphabet, so a character OCR confused (O for 0, K for the `<` filler) is repaired by its position, and the
ambiguous document number is repaired by trying its confusable readings against its check digit.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

_WEIGHTS = (7, 3, 1)
REPAIRED = "check digit (after undoing an OCR confusion)"
_LENGTHS = {"TD3": (44, 2), "TD2": (36, 2), "TD1": (30, 3)}
# What OCR reads in place of a character, per kind of position.
_TO_DIGIT = str.maketrans("OQDUIlLZSBGT", "000011125867")
_TO_LETTER = str.maketrans("0125869", "OIZSBGB")
# Readings of a document-number character (letters and digits are both allowed there) worth trying.
_CONFUSABLE = {
    "0": "OQD",
    "O": "0Q",
    "Q": "O0",
    "D": "0O",
    "1": "I7",
    "I": "1",
    "7": "1",
    "2": "Z",
    "Z": "2",
    "5": "S",
    "S": "5",
    "8": "B",
    "B": "8",
    "6": "G",
    "G": "6",
}
# Characters OCR engines read for the `<` filler (guillemets, angle brackets, a hiragana く) and Greek and Cyrillic
# capitals read for the Latin ones they look like (a Greek rho for P).
_LOOKALIKES = str.maketrans(
    "\u2039\u3008\uff1c\u304f\u3050\u1438"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0423\u0425",
    "<<<<<<ABEZHIKMNOPTYXABEKMHOPCTYX",
)
# Optional-data fields per layout (line, start, end): mostly fillers, which OCR reads as K or X among them.
_OPTIONAL = {"TD3": [(1, 28, 42)], "TD2": [(1, 28, 35)], "TD1": [(0, 15, 30), (1, 18, 29)]}


def check_digit(text: str) -> str:
    """ICAO 9303 check digit of `text`: digits are themselves, A-Z are 10-35, the filler is 0; weights 7, 3, 1."""
    total = 0
    for i, char in enumerate(text):
        if char.isdigit():
            value = int(char)
        elif "A" <= char <= "Z":
            value = ord(char) - 55
        else:
            value = 0
        total += value * _WEIGHTS[i % 3]
    return str(total % 10)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Mrz:
    layout: str  # TD1, TD2 or TD3
    lines: list[str]
    document_code: str
    issuing_state: str
    surname: str
    given_names: str
    document_number: str
    nationality: str
    birth: date | None
    sex: str
    expiry: date | None
    optional: str
    checks: list[Check] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return all(check.passed for check in self.checks)


def find(text: str, today: date | None = None) -> Mrz | None:
    """The machine-readable zone in OCR text, parsed and checked; None when the text holds none."""
    candidates = [_normalised(line) for line in text.splitlines()]
    candidates = [line for line in candidates if len(line) >= 26 and _looks_machine_readable(line)]
    best: Mrz | None = None
    for layout, (length, count) in _LENGTHS.items():
        for start in range(len(candidates) - count + 1):
            names_line = 0 if layout != "TD1" else 2
            lines = [
                _fitted(line, length, short_ok=i == names_line)
                for i, line in enumerate(candidates[start : start + count])
            ]
            if any(line is None for line in lines):
                continue
            parsed = parse([line for line in lines if line is not None], layout, today)
            if parsed is not None and (best is None or score(parsed) > score(best)):
                best = parsed
    return best


def parse(lines: list[str], layout: str, today: date | None = None) -> Mrz | None:
    """Parse and check the lines of one zone; None when they cannot be one of `layout`. Optional-data fields are
    read with stray K/X among their fillers made fillers, and as printed; the check digits choose, and on a tie
    the fillers win: K is worth 20 and X 33, so a K read for a filler never changes a check digit (20 x any
    weight is 0 mod 10)."""
    today = today or date.today()
    best: Mrz | None = None
    for candidate in (_optional_fillers(lines, layout), lines):
        parsed = _parse_td1(candidate, today) if layout == "TD1" else _parse_two_lines(candidate, today, layout)
        if parsed is not None and (best is None or score(parsed) > score(best)):
            best = parsed
    return best


def _optional_fillers(lines: list[str], layout: str) -> list[str]:
    repaired = list(lines)
    for line, start, end in _OPTIONAL[layout]:
        field = repaired[line][start:end]
        if field.count("<") * 2 >= len(field):
            field = re.sub(r"[KX]", "<", field)
        repaired[line] = repaired[line][:start] + field + repaired[line][end:]
    return repaired


def _parse_two_lines(lines: list[str], today: date, layout: str) -> Mrz | None:
    """TD3 (44 characters a line, passports) and TD2 (36): the same fields at the same places up to the optional
    data, which in TD3 has its own check digit; the composite digit ends the second line and covers everything
    from the document number on, but the nationality and sex."""
    first, second = lines
    width = len(first)
    if first[0] not in ("P" if layout == "TD3" else "ACI"):
        return None
    surname, given, zone = _names(first[5:width])
    dob, dob_check = _digits(second[13:19]), _digits(second[19])
    expiry, expiry_check = _digits(second[21:27]), _digits(second[27])
    optional = second[28 : width - 2] if layout == "TD3" else second[28 : width - 1]
    optional_check = _digits(second[width - 2]) if layout == "TD3" else ""
    composite = _digits(second[width - 1])
    dates = dob + dob_check + expiry + expiry_check
    number, checks = _document_number(
        second[0:9],
        second[9],
        lambda n: check_digit(n + _digits(second[9]) + dates + optional + optional_check) == composite,
    )
    checks += [_check("date_of_birth", dob, dob_check), _check("date_of_expiry", expiry, expiry_check)]
    if layout == "TD3":
        # An empty personal-number field may carry `<` as its check digit.
        personal = optional_check == check_digit(optional) or (set(optional) == {"<"} and optional_check == "<")
        checks.append(Check("personal_number", personal, "check digit"))
    covered = number + second[9] + dates + optional + optional_check
    checks.append(_check("composite", covered, composite))
    return Mrz(
        layout=layout,
        lines=[
            first[0:2] + _letters(first[2:5]) + zone,
            number
            + second[9]
            + _letters(second[10:13])
            + dob
            + dob_check
            + second[20]
            + expiry
            + expiry_check
            + optional
            + optional_check
            + composite,
        ],
        document_code=_letters(first[0:2]),
        issuing_state=_letters(first[2:5]),
        surname=surname,
        given_names=given,
        document_number=number,
        nationality=_letters(second[10:13]),
        birth=_date(dob, today, past=True),
        sex=_sex(second[20]),
        expiry=_date(expiry, today, past=False),
        optional=optional.replace("<", ""),
        checks=checks,
    )


def _parse_td1(lines: list[str], today: date) -> Mrz | None:
    first, second, third = lines
    if first[0] not in "ACI":
        return None
    rest = first[15:30] + _digits(second[0:7]) + _digits(second[8:15]) + second[18:29]
    number, checks = _document_number(
        first[5:14], first[14], lambda n: check_digit(n + _digits(first[14]) + rest) == _digits(second[29])
    )
    optional_1 = first[15:30]
    dob, dob_check = _digits(second[0:6]), _digits(second[6])
    expiry, expiry_check = _digits(second[8:14]), _digits(second[14])
    optional_2, composite = second[18:29], _digits(second[29])
    surname, given, zone = _names(third)
    mrz = Mrz(
        layout="TD1",
        lines=[],
        document_code=_letters(first[0:2]),
        issuing_state=_letters(first[2:5]),
        surname=surname,
        given_names=given,
        document_number=number,
        nationality=_letters(second[15:18]),
        birth=_date(dob, today, past=True),
        sex=_sex(second[7]),
        expiry=_date(expiry, today, past=False),
        optional=(optional_1 + optional_2).replace("<", ""),
        checks=checks,
    )
    mrz.checks += [
        _check("date_of_birth", dob, dob_check),
        _check("date_of_expiry", expiry, expiry_check),
        _check(
            "composite",
            number + first[14] + optional_1 + dob + dob_check + expiry + expiry_check + optional_2,
            composite,
        ),
    ]
    mrz.lines = [
        first[0:2] + _letters(first[2:5]) + number + first[14:30],
        dob + dob_check + second[7] + expiry + expiry_check + _letters(second[15:18]) + second[18:29] + composite,
        zone,
    ]
    return mrz


def _normalised(line: str) -> str:
    """Upper case, no spaces, lookalikes of the filler and of Latin capitals made what they look like."""
    line = re.sub(r"\s+", "", unicodedata.normalize("NFKC", line).upper())  # NFKC: fullwidth letters
    return line.replace("\u00ab", "<<").translate(_LOOKALIKES)


def _looks_machine_readable(line: str) -> bool:
    if not re.fullmatch(r"[A-Z0-9<KX]+", line):
        return False
    # Real zones are full of fillers; OCR may have read some of them as K or X, but never all.
    return line.count("<") >= 2 or bool(re.search(r"[<KX]{4,}", line))


def _fitted(line: str, length: int, *, short_ok: bool = False) -> str | None:
    """The line at its layout's length: a filler or two lost or gained at the end is common in OCR, and so is a
    K or X read in the gap between two fillers."""
    if short_ok and len(line) > length and 0 <= line.find("<<<") < length:
        return line[:length]  # a names line: after three fillers there is only filler, whatever OCR saw in it
    while len(line) > length:
        gaps = list(re.finditer(r"(?<=<)[KX](?=<)", line))
        if not gaps:
            break
        line = line[: gaps[-1].start()] + line[gaps[-1].end() :]
    if abs(len(line) - length) > 2 and not (short_ok and length > len(line) >= length // 2 and line[-1] in "<KX"):
        return None
    return line[:length].ljust(length, "<")


def _names(zone: str) -> tuple[str, str, str]:
    """Surname, given names and the repaired zone from `SMITH<<JOHN<MICHAEL<<<<` (fillers read as K or X)."""
    zone = _letters(zone)
    # The separator read with a K or X in its gap (NOVAK<K<ERIK), when no separator comes before it.
    gap = re.search(r"<[KX]<", zone)
    if gap and "<<" not in zone[: gap.start() + 1]:
        zone = zone[: gap.start()] + "<<" + zone[gap.end() :] + "<"
    # Names never hold three fillers in a row: from there on, everything is filler, whatever OCR made of it.
    end = zone.find("<<<")
    if end > 0:
        zone = zone[:end] + "<" * (len(zone) - end)
    # Fillers read as K or X at the end of the zone: a tail of them holding a long run of K/X, or starting with a
    # real filler (a name may end in K or X itself: JACK<<<).
    tail = re.search(r"[<KX]*$", zone)
    if tail and (re.search(r"[KX]{5,}", tail.group()) or tail.group().startswith("<")):
        zone = zone[: tail.start()] + "<" * len(tail.group())
    else:
        zone = re.sub(r"<[<KX]*$", lambda m: "<" * len(m.group()), zone)
    surname, _, given = zone.partition("<<")
    if not given and "KK" in surname:  # the separator itself misread
        surname, _, given = surname.partition("KK")
        zone = zone.replace("KK", "<<", 1)
    return _words(surname), _words(given), zone


def _words(part: str) -> str:
    return " ".join(word for word in part.replace("<", " ").split() if word).strip()


def _letters(text: str) -> str:
    return text.translate(_TO_LETTER)


def _digits(text: str) -> str:
    return text.translate(_TO_DIGIT)


def _sex(char: str) -> str:
    char = {"H": "M", "<": "X"}.get(char, char)
    return char if char in "MFX" else "X"


def _document_number(
    number: str, digit: str, composite: Callable[[str], bool] = lambda _: True
) -> tuple[str, list[Check]]:
    """The document number, repaired where its check digit (and the composite digit) accept exactly one reading
    with the fewest OCR confusions undone. Several readings passing at that count are ambiguous: one in ten
    random substitutions passes a check digit, so the number is then reported as failing rather than guessed."""
    digit = _digits(digit)
    if check_digit(number) == digit:
        return number, [Check("document_number", True, "check digit")]
    positions = [i for i, char in enumerate(number) if char in _CONFUSABLE]
    for count in range(1, min(3, len(positions)) + 1):
        passing = set()
        for chosen in itertools.combinations(positions, count):
            for replacement in itertools.product(*(_CONFUSABLE[number[i]] for i in chosen)):
                candidate = list(number)
                for i, char in zip(chosen, replacement, strict=True):
                    candidate[i] = char
                repaired = "".join(candidate)
                if check_digit(repaired) == digit and composite(repaired):
                    passing.add(repaired)
        if len(passing) == 1:
            return passing.pop(), [Check("document_number", True, REPAIRED)]
        if passing:
            break
    return number, [Check("document_number", False, f"check digit {digit} does not match {check_digit(number)}")]


def _check(name: str, value: str, digit: str) -> Check:
    expected = check_digit(value)
    if expected == digit:
        return Check(name, True, "check digit")
    return Check(name, False, f"check digit {digit} does not match {expected}")


def _date(value: str, today: date, *, past: bool) -> date | None:
    """YYMMDD to a date: a birth date is in the past; an expiry date within the next or the previous 50 years."""
    if not value.isdigit():
        return None
    year, month, day = int(value[0:2]), int(value[2:4]), int(value[4:6])
    century = today.year // 100 * 100
    full = century + year
    if past and full > today.year:
        full -= 100
    elif not past and full < today.year - 50:
        full += 100
    try:
        return date(full, month, day)
    except ValueError:
        return None


def score(mrz: Mrz) -> tuple[int, int]:
    """More checks passing, then fewer repairs."""
    return sum(check.passed for check in mrz.checks), -sum(check.detail == REPAIRED for check in mrz.checks)
