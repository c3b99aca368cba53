"""The one check of `RATER_JWT_KEY`: parsed for its algorithm, or refused with a reason.

`Settings.validate` calls it so that a worker refuses a bad key before it starts, and
the API's token verifier calls it for the key it verifies with.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import exceptions as jwt_errors
from jwt.algorithms import HMACAlgorithm, RSAAlgorithm

VerificationKey = RSAPublicKey | bytes


def load_verification_key(algorithm: str, key: str | bytes) -> VerificationKey:
    """Parse the configured key; ValueError (a reason fit for one line) if it cannot
    serve `algorithm` (RS256: an RSA public key of 2048 bits or more; HS256: a secret of
    32 bytes or more that is not itself a PEM or SSH key)."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if algorithm == "RS256":
        try:
            public = load_pem_public_key(raw)
        except (ValueError, TypeError) as exc:
            raise ValueError("RS256 needs a PEM public key (BEGIN PUBLIC KEY)") from exc
        if not isinstance(public, RSAPublicKey):
            raise ValueError("RS256 key must be an RSA public key")
        if RSAAlgorithm(RSAAlgorithm.SHA256).check_key_length(public):
            raise ValueError("RS256 key is shorter than 2048 bits")
        return public
    if algorithm != "HS256":
        raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
    hmac = HMACAlgorithm(HMACAlgorithm.SHA256)
    try:
        secret = hmac.prepare_key(raw)
    except jwt_errors.InvalidKeyError as exc:
        raise ValueError("an HS256 secret must not be a PEM/SSH key") from exc
    if hmac.check_key_length(secret):
        raise ValueError("an HS256 secret must be at least 32 bytes")
    return secret
