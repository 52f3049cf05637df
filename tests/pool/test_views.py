"""The service's typed edges: orders validate when built, with the requests' own
messages; views refuse what would make them lie, and their JSON is the API's."""

from __future__ import annotations

import inspect
import typing
from dataclasses import FrozenInstanceError, fields, replace

import pytest

from tether._ticket import SessionTicket
from tether.pool import _schemas as s
from tether.pool._model import DeviceSpec, PlacementPolicy
from tether.pool._orders import GroupOrder, SliceOrder, device_specs
from tether.pool._request import FrameworkRequirement, SliceRequest
from tether.pool._service import PoolService
from tether.pool._session_store import SessionRow
from tether.pool._session_views import GroupView, LeaseDevice, SessionView, TicketCheck
from tether.pool._usage_views import GroupUsageView, UsageView
from tether.pool._values import PoolInputError
from tether.pool._views import (
    Admission,
    DeviceView,
    IssuedToken,
    MeView,
    NodeBeatReply,
    NodeRegistration,
    NodeStatusView,
    NodeView,
    QuotaView,
    TeamView,
    TokenView,
    UserView,
)

GiB = 1 << 30

# --------------------------------------------------------------------------- orders


def test_an_order_parses_each_unit_once_and_files_the_request_the_body_asked_for() -> None:
    order = SliceOrder.from_json(
        {"fraction": None, "memory": "8GiB", "frameworks": ["torch>=2.4"], "vendor": " NVIDIA ",
         "policy": "spread", "priority": 3, "wait": False, "name": "", "team": "ml"}
    )  # fmt: skip
    assert order.memory_bytes == 8 * GiB
    assert order.frameworks == (FrameworkRequirement(name="torch", specifier=">=2.4"),)
    assert (order.vendor, order.policy, order.name) == ("nvidia", PlacementPolicy.SPREAD, None)
    filed = order.request(id="r1", team="ml", user="ann")
    assert filed == SliceRequest(
        id="r1", memory_bytes=8 * GiB, frameworks=("torch>=2.4",),  # type: ignore[arg-type]
        vendor="nvidia", team="ml", user="ann", priority=3, wait=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"fraction": 1.5}, "fraction"),
        ({"memory_bytes": "9PiB"}, "requested memory"),
        ({"fraction": 0.5, "min_memory_bytes": "lots"}, "minimum memory"),
        ({}, "a request needs a fraction, a memory size or a count of whole devices"),
        ({"count": 2, "fraction": 0.5}, "not both"),
        ({"fraction": 0.5, "frameworks": ("torch>>2",)}, "version specifier '>>2'"),
        ({"fraction": 0.5, "priority": 5000}, "priority must be a whole number"),
        ({"fraction": 0.5, "policy": "worst-fit"}, "placement policy must be one of"),
        ({"fraction": 0.5, "name": ""}, "a session's name"),
    ],
)
def test_a_bad_order_is_refused_when_built_with_the_requests_message(
    kw: dict[str, object], message: str
) -> None:
    with pytest.raises(PoolInputError, match=message) as order_error:
        SliceOrder(**kw)  # type: ignore[arg-type]
    if "policy" in kw or "name" in kw:
        return  # the order's own fields: a request has none
    with pytest.raises(PoolInputError) as request_error:
        SliceRequest(id="r", **kw)  # type: ignore[arg-type]
    assert str(order_error.value) == str(request_error.value)  # one message per unit


def test_sizes_are_read_before_the_rest_as_the_service_always_read_a_body() -> None:
    # A whole-device count with a bad memory size: the size is what is wrong first.
    with pytest.raises(PoolInputError, match="requested memory"):
        SliceOrder(count=2, memory_bytes="bogus")  # type: ignore[arg-type]


def test_a_group_order_checks_its_counts_and_keeps_names_apart() -> None:
    shape = SliceOrder(fraction=0.25)
    gang = GroupOrder(shape=shape, max_count=4)
    assert (gang.min_count_or_all, gang.name) == (4, None)
    assert GroupOrder(shape=shape, max_count=4, min_count=2).min_count_or_all == 2
    for bad, message in [
        # A gang's min count is its max: named first, as GroupRequest always did.
        ({"max_count": 0}, "group min count must be a whole number from 1 to 10000, got 0"),
        ({"max_count": 8, "min_count": 1, "name": None}, None),
        ({"max_count": 10_001, "min_count": 1}, "group max count .* got 10001"),
        ({"max_count": 4, "min_count": 5}, "min count 5 is above its max count 4"),
        ({"max_count": 4, "name": ""}, "group name"),
    ]:
        if message is None:
            GroupOrder(shape=shape, **bad)  # type: ignore[arg-type]
            continue
        with pytest.raises(PoolInputError, match=message):
            GroupOrder(shape=shape, **bad)  # type: ignore[arg-type]
    with pytest.raises(PoolInputError, match="no name of its own"):
        GroupOrder(shape=SliceOrder(fraction=0.25, name="x"), max_count=2)
    body = {"fraction": 0.25, "name": "sweep", "max_count": 8, "min_count": None, "team": None}
    parsed = GroupOrder.from_json(body)
    assert parsed == GroupOrder(shape=shape, max_count=8, name="sweep")


H100 = {"id": "cuda:0", "vendor": " NVIDIA ", "model": "H100", "memory": "80GiB"}


def test_a_nodes_devices_become_device_specs_once_with_their_own_messages() -> None:
    (spec,) = device_specs([{**H100, "arch": "9.0", "frameworks": {"Torch": "2.4.1"}}])
    assert spec == DeviceSpec(
        id="cuda:0", vendor="nvidia", model="H100", memory_bytes=80 * GiB, arch="9.0",
        frameworks={"torch": "2.4.1"},
    )  # fmt: skip
    assert device_specs([]) == ()
    for bad, message in [
        ({"memory": "lots"}, "device cuda:0 memory 'lots' is not a size"),
        ({"memory": 0}, "device cuda:0 memory must be positive, got 0"),
        ({"vendor": "  "}, "device cuda:0: vendor must be a non-empty string"),
        ({"frameworks": {"torch": 2}}, "device cuda:0: frameworks must map names to version"),
        # Wrong in two ways: the memory is read first, as the service always read it.
        ({"vendor": "  ", "memory": "lots"}, "device cuda:0 memory 'lots' is not a size"),
    ]:
        with pytest.raises(PoolInputError, match=message):
            device_specs([H100, {**H100, **bad}])


def test_orders_and_views_are_frozen_slotted_and_keyword_only() -> None:
    for cls in (SliceOrder, GroupOrder, SessionView, GroupView, NodeView, UsageView, QuotaView):
        assert "__slots__" in vars(cls) and "__dict__" not in dir(cls), cls
        params = inspect.signature(cls).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), cls
    with pytest.raises(FrozenInstanceError):
        SliceOrder(fraction=0.5).fraction = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------- views


def _row(**kw: object) -> SessionRow:
    base: dict[str, object] = dict(
        id="s1", team_id="t1", team="ml", user_id="u1", user="ann", state="placed",
        request={"id": "s1", "fraction": 0.5, "memory_bytes": None, "frameworks": []},
        priority=0, seq=1, submitted_at=10.0, queue_deadline=None, node_name="gpu1",
        started_at=11.0, last_heartbeat=12.0, ended_at=None, end_reason=None, message=None,
        share=0.5, memory_bytes=GiB, devices=(("cuda:0", 0.5, GiB),), metering=None, name="n",
    )  # fmt: skip
    base.update(kw)
    return SessionRow(**base)  # type: ignore[arg-type]


def test_a_session_view_is_the_json_the_api_always_sent() -> None:
    view = SessionView.of(_row(), "tcp://h:1")
    assert view.devices == (LeaseDevice(id="cuda:0", fraction=0.5, memory_bytes=GiB),)
    expected = {
        "id": "s1", "name": "n", "team": "ml", "user": "ann", "state": "placed",
        "submitted_at": 10.0, "request": {"fraction": 0.5, "frameworks": []}, "reason": None,
        "queue_deadline": None, "node": "gpu1", "address": "tcp://h:1",
        "devices": [{"id": "cuda:0", "fraction": 0.5, "memory_bytes": GiB}], "share": 0.5,
        "memory_bytes": GiB, "started_at": 11.0, "last_heartbeat": 12.0, "ended_at": None,
        "end_reason": None, "metering": None,
    }  # fmt: skip
    assert view.to_json() == expected
    ticketed = replace(view, ticket="t", ticket_expires_at=99.0, index=3)
    assert ticketed.to_json() == {**expected, "ticket": "t", "ticket_expires_at": 99.0, "index": 3}
    queued = SessionView.of(_row(state="queued", node_name=None, devices=()), None)
    assert replace(queued, position=2).to_json()["position"] == 2
    assert "position" not in view.to_json()  # only while queued, as before


def test_views_refuse_what_would_make_them_lie() -> None:
    view = SessionView.of(_row(), None)
    with pytest.raises(PoolInputError, match="state"):
        replace(view, state="running")
    with pytest.raises(PoolInputError, match="ticket"):
        replace(view, ticket="t")  # a ticket with no expiry
    with pytest.raises(PoolInputError, match="status"):
        NodeStatusView(name="n", status="asleep", last_heartbeat=1.0)
    with pytest.raises(PoolInputError, match="kind"):
        TokenView(id="i", kind="robot", user=None, node=None, label="", created_at=1.0,
                  revoked_at=None)  # fmt: skip
    with pytest.raises(PoolInputError, match="ticket key"):
        NodeRegistration(name="n", status="ready", last_heartbeat=1.0, registration="r",
                         ticket_keys=())  # fmt: skip
    listed = MeView(kind="user", user="ann", admin=False, teams=["ml"], node=None)  # type: ignore[arg-type]
    assert listed.teams == ("ml",)  # JSON's lists are held as tuples


_DEVICE = DeviceView(node="gpu1", id="cuda:0", vendor="nvidia", model="H100", memory_bytes=GiB,
                     arch="sm90", frameworks={"torch": "2.4"}, allocated_share=0.5,
                     allocated_memory_bytes=GiB // 2)  # fmt: skip
_SESSION = SessionView.of(_row(), "tcp://h:1")
_TICKET = SessionTicket(
    session_id="s1", node="gpu1", device_ids=("cuda:0",), fraction=0.5, memory_bytes=GiB,
    team="ml", user="ann", issued_at=1.0, expires_at=2.0,
)  # fmt: skip

#: One of every view the API sends, with the pydantic model the API sends it through.
EXAMPLES: list[tuple[object, type]] = [
    (MeView(kind="user", user="ann", admin=True, teams=("ml",), node=None), s.MeOut),
    (TeamView(name="ml", created_at=1.0), s.TeamOut),
    (UserView(name="ann", admin=False, teams=("ml", "cv"), created_at=1.0), s.UserOut),
    (
        TokenView(
            id="i", kind="user", user="ann", node=None, label="l", created_at=1.0, revoked_at=None
        ),
        s.TokenOut,
    ),
    (
        IssuedToken(
            id="i",
            kind="node",
            user=None,
            node="gpu1",
            label="",
            created_at=1.0,
            revoked_at=2.0,
            token="tn_x",
        ),
        s.IssuedTokenOut,
    ),
    (
        QuotaView(team="ml", max_share=1.5, max_memory_bytes=None, device_hours_per_month=10.0),
        s.QuotaOut,
    ),
    (NodeStatusView(name="gpu1", status="cordoned", last_heartbeat=1.0), s.NodeStatusOut),
    (
        NodeRegistration(
            name="gpu1",
            status="ready",
            last_heartbeat=1.0,
            registration="r",
            ticket_keys=("aa", "bb"),
        ),
        s.NodeRegisterOut,
    ),
    (
        NodeBeatReply(status="drained", ended_sessions=("s1",), ticket_keys=("aa",)),
        s.NodeHeartbeatOut,
    ),
    (NodeBeatReply(status="ready", ended_sessions=()), s.NodeHeartbeatOut),
    (Admission(session_id="s1", ticket_keys=("aa",)), s.AdmitOut),
    (_DEVICE, s.DeviceOut),
    (
        NodeView(
            name="gpu1",
            address="tcp://h:1",
            status="lost",
            registered_at=1.0,
            last_heartbeat=2.0,
            devices=(_DEVICE,),
        ),
        s.NodeOut,
    ),
    (_SESSION, s.SessionOut),
    (replace(_SESSION, ticket="t", ticket_expires_at=9.0, index=1), s.GroupMemberOut),
    (
        GroupView(
            id="g",
            name="sweep",
            team="ml",
            user="ann",
            state="placed",
            min_count=2,
            max_count=4,
            placed_count=4,
            running=3,
            ended=1,
            request={"fraction": 0.25},
            policy="spread",
            submitted_at=1.0,
            queue_deadline=None,
            placed_at=2.0,
            ended_at=None,
            end_reason=None,
            reason=None,
            members=(_SESSION,),
        ),
        s.GroupOut,
    ),
    (
        UsageView(
            month="2027-01",
            team="ml",
            user="*",
            device_seconds=1.0,
            memory_gib_seconds=2.0,
            sessions=3,
            peak_share=0.5,
        ),
        s.UsageRow,
    ),
    (
        GroupUsageView(
            month="2027-01",
            team="ml",
            group="sweep",
            group_id="g",
            user="ann",
            members=4,
            device_seconds=1.0,
            memory_gib_seconds=2.0,
            sessions=4,
            peak_share=1.0,
        ),
        s.GroupUsageRow,
    ),
    (TicketCheck(claims=_TICKET), s.TicketOut),
]


@pytest.mark.parametrize(("view", "model"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_each_view_round_trips_through_the_api_model_unchanged(view: object, model: type) -> None:
    body = view.to_json()  # type: ignore[attr-defined]
    sent = model.model_validate(body).model_dump(mode="json")
    assert _as_given(sent, body) == body  # every key the view gives, sent as it is
    # ... and every field the view has is in its JSON (none lost on the way out).
    names = {f.name for f in fields(view)}  # type: ignore[arg-type]
    renamed = {"claims"} if isinstance(view, TicketCheck) else set()
    optional = {"position", "ticket", "ticket_expires_at", "index", "members", "ticket_keys"}
    assert names - renamed - optional <= set(body), names - set(body)


def _as_given(sent: object, body: object) -> object:
    """``sent`` with only the keys ``body`` has, at every depth (the model adds its
    defaults, such as a member's ``index: null``; FastAPI sends those alike)."""
    if isinstance(body, dict) and isinstance(sent, dict):
        return {k: _as_given(sent[k], v) for k, v in body.items()}
    if isinstance(body, list) and isinstance(sent, list):
        return [_as_given(a, b) for a, b in zip(sent, body, strict=True)]
    return sent


def test_the_facade_takes_and_gives_no_dicts() -> None:
    hints = {
        name: typing.get_type_hints(member)
        for name, member in inspect.getmembers(PoolService, inspect.isfunction)
        if not name.startswith("_")
    }
    for name, types in hints.items():
        for what, hint in types.items():
            assert "dict" not in str(hint).lower(), (name, what, hint)
    assert hints["request_slice"]["order"] is SliceOrder
    assert hints["request_group"]["order"] is GroupOrder
    assert typing.get_args(hints["register_node"]["devices"]) == (DeviceSpec,)
