"""Phase f's session load: every call's set-up comes before its update, the update before
its terminate, and a window's session ids are its own."""

import base64

import orjson

from benchmarks.data import DataSet
from benchmarks.web import SESSION_STEP_GAP, session_targets


def data_set() -> DataSet:
    subs = [{"subscription_id": f"sub-{i}"} for i in range(7)]
    return DataSet(subscriptions=subs, records=[], now_ms=1_790_000_000_000)


def steps(tag: str, requests: int) -> list[tuple[str, str]]:
    """(kind, session id) per request, in send order."""
    out = []
    for t in session_targets("http://w", data_set(), "tok", tag, requests).targets:
        path = t["url"].removeprefix("http://w/v1/sessions")
        body = orjson.loads(base64.b64decode(t["body"]))
        if not path:
            out.append(("initial", body["session_id"]))
        else:
            session_id, kind = path.strip("/").split("/")
            out.append((kind, session_id))
        assert t["header"]["Authorization"] == ["Bearer tok"]
    return out


def test_each_call_is_set_up_then_updated_then_terminated() -> None:
    order = steps("w1", 3000)
    seen: dict[str, list[int]] = {}
    for index, (kind, session_id) in enumerate(order):
        seen.setdefault(session_id, []).append(index)
        assert kind == ("initial", "update", "terminate")[len(seen[session_id]) - 1]
    assert len(seen) == 3000 // 3 + 1
    assert all(len(at) == 3 for at in seen.values())
    # the gap keeps a call's requests apart: its set-up is answered before its update goes
    assert min(at[1] - at[0] for at in seen.values()) >= SESSION_STEP_GAP
    assert len(order) >= 3000


def test_windows_never_share_session_ids() -> None:
    first = {s for _, s in steps("w1", 600)}
    second = {s for _, s in steps("w2", 600)}
    assert first and second and not first & second
