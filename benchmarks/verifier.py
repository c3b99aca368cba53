"""(f) The bearer-token check on its own: `TokenVerifier.authenticate` for a token seen
for the first time (signature and claims verified) and for one it has verified before
(remembered until its exp). It was a timed unit test once; timings belong here."""

from __future__ import annotations

import time
from typing import Any

from rater.web.auth import CALL_AUTHORIZER, TokenVerifier
from rater.web.tokens import generate_rsa_keypair, issue_token

ISSUER, AUDIENCE = "rater-bench", "rater"
HS256_SECRET = "benchmark-only-hs256-secret-0123456789abcdef"


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
            "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1)}


def measure(rounds: int = 500) -> dict[str, Any]:
    private_pem, public_pem = generate_rsa_keypair()
    result: dict[str, Any] = {"rounds": rounds}
    for algorithm, verify_key, sign_key in (("HS256", HS256_SECRET, HS256_SECRET),
                                            ("RS256", public_pem, private_pem)):
        verifier = TokenVerifier(algorithm, verify_key, issuer=ISSUER, audience=AUDIENCE)
        first, again = [], []
        for i in range(rounds):
            header = "Bearer " + issue_token(sign_key, subject=f"pbx-{i}", scope=CALL_AUTHORIZER,
                                             issuer=ISSUER, audience=AUDIENCE,
                                             algorithm=algorithm)
            started = time.perf_counter()
            verifier.authenticate(header)
            first.append(time.perf_counter() - started)
            started = time.perf_counter()
            verifier.authenticate(header)
            again.append(time.perf_counter() - started)
        result[algorithm] = {"first": _percentiles(first), "remembered": _percentiles(again)}
    return result
