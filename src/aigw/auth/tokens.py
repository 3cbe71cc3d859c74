"""Random secrets and the keyed hash that finds them: HMAC-SHA-256, never a slow KDF on the request path.

API keys and session tokens carry 256 bits of randomness, so a fast keyed hash is as strong as a
password hash for them, and a leaked database without the server secret reveals nothing usable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_PREFIX = "aigw_"
KEY_BYTES = 32
# 32 random bytes need at most 43 base62 digits; pad so every key has the same length.
_KEY_DIGITS = 43
DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 8


def base62(data: bytes, width: int) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def new_api_key() -> str:
    return KEY_PREFIX + base62(secrets.token_bytes(KEY_BYTES), _KEY_DIGITS)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def keyed_hash(secret: bytes, token: str) -> str:
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX) and len(token) == len(KEY_PREFIX) + _KEY_DIGITS
