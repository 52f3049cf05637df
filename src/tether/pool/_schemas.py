"""The JSON bodies of the pool's HTTP API, as pydantic models.

(Over 400 lines: one model per body, declarations only.)

These models are the OpenAPI schema (served at ``/v1/openapi.json``) and the
first line of validation: unknown fields are rejected (``extra="forbid"``), and
ranges that can be said in JSON Schema (fractions in ``(0, 1]``, counts, sizes)
are said here, so the published schema tells clients the truth. Everything
else (memory strings, framework requirements, the team) is checked by
``tether.pool._values`` when the service builds its records, with the same 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tether.pool._model import PlacementPolicy
from tether.pool._values import MAX_MEMORY_BYTES, parse_fraction

_Strict = ConfigDict(extra="forbid")

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Memory = Annotated[
    str | Annotated[int, Field(gt=0, le=MAX_MEMORY_BYTES)],
    Field(description="bytes, or a size such as '8GiB', '512MiB', '8G' (binary)"),
]
Seconds = Annotated[float, Field(ge=0, le=1e12)]
#: A share of one device: checked by the pool's one parser (one message for the
#: unit everywhere); the bounds are restated for the schema only.
Fraction = Annotated[
    float,
    AfterValidator(parse_fraction),
    Field(json_schema_extra={"exclusiveMinimum": 0, "maximum": 1}),
]


class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable code: bad-request, unauthorized, ...")
    message: str = Field(description="what was wrong, for people")
    detail: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorInfo


# ---------------------------------------------------------------- admin records


class TeamIn(BaseModel):
    model_config = _Strict
    name: Name


class TeamOut(BaseModel):
    name: str
    created_at: float


class UserIn(BaseModel):
    model_config = _Strict
    name: Name
    admin: bool = False
    teams: list[Name] = Field(default_factory=list, max_length=100)


class UserOut(BaseModel):
    name: str
    admin: bool
    teams: list[str]
    created_at: float


class MemberIn(BaseModel):
    model_config = _Strict
    user: Name


class TokenIn(BaseModel):
    model_config = _Strict
    kind: Literal["user", "node"] = "user"
    user: Name | None = Field(default=None, description="owner of a user token")
    node: Name | None = Field(
        default=None, description="node a node token may register as (none: any name)"
    )
    label: str = Field(default="", max_length=200)


class TokenOut(BaseModel):
    id: str
    kind: Literal["user", "node"]
    user: str | None
    node: str | None
    label: str
    created_at: float
    revoked_at: float | None


class IssuedTokenOut(TokenOut):
    token: str = Field(description="the secret; shown only in this response")


class QuotaIn(BaseModel):
    model_config = _Strict
    max_share: Annotated[float, Field(ge=0, le=1e6)] | None = Field(
        default=None, description="devices' worth of share held at once (None: unlimited)"
    )
    max_memory: Memory | Literal[0] | None = Field(
        default=None, description="device memory held at once (None: unlimited)"
    )
    device_hours_per_month: Annotated[float, Field(ge=0, le=1e9)] | None = None


class QuotaOut(BaseModel):
    team: str
    max_share: float | None
    max_memory_bytes: int | None
    device_hours_per_month: float | None


class MeOut(BaseModel):
    kind: Literal["user", "node"]
    user: str | None
    admin: bool
    teams: list[str]
    node: str | None


# ----------------------------------------------------------------------- nodes


class DeviceIn(BaseModel):
    model_config = _Strict
    id: Annotated[str, Field(min_length=1, max_length=200)]
    vendor: Annotated[str, Field(min_length=1, max_length=64)]
    model: Annotated[str, Field(max_length=200)]
    memory: Memory
    arch: Annotated[str, Field(max_length=64)] = ""
    frameworks: dict[str, Annotated[str, Field(max_length=100)]] = Field(
        default_factory=dict, max_length=100
    )


class NodeRegisterIn(BaseModel):
    model_config = _Strict
    name: Name
    address: Annotated[str, Field(min_length=3, max_length=500, description="tcp://host:port")]
    devices: list[DeviceIn] = Field(max_length=1024)
    replace: bool = Field(
        default=False,
        description="take over a registration that is still alive (an acceptor restarting)",
    )
    sent_at: Seconds | None = Field(default=None, description="sender's clock, unix seconds")


class SessionMeter(BaseModel):
    """One session's figures in a node heartbeat (the acceptor's ``SessionUsage``)."""

    model_config = _Strict
    session_id: Annotated[str, Field(min_length=1, max_length=200)]
    wall_seconds: Annotated[float, Field(ge=0, le=1e12)] | None = None
    memory_hwm: Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)] | None = Field(
        default=None, description="host memory (RSS) high-water mark, bytes"
    )
    memory_byte_seconds: Annotated[float, Field(ge=0, le=1e30)] | None = None
    device_memory_hwm: Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)] | None = None
    device_memory_byte_seconds: Annotated[float, Field(ge=0, le=1e30)] | None = None
    device_util_mean: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None, description="percent, time-weighted"
    )
    device_util_max: Annotated[float, Field(ge=0, le=100)] | None = None
    samples: Annotated[int, Field(ge=0, le=2**62)] | None = None
    memory_now: Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)] | None = Field(
        default=None, description="host memory (RSS) at the last sample, bytes"
    )
    device_memory_now: Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)] | None = None
    device_util_now: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None, description="percent, at the last sample"
    )
    ended_at: Seconds | None = Field(
        default=None,
        description="the session has ended, at this time (sender's clock): its lease ends then",
    )


_Registration = Annotated[str, Field(min_length=1, max_length=200)]


class NodeHeartbeatIn(BaseModel):
    model_config = _Strict
    sent_at: Seconds = Field(description="sender's clock, unix seconds; checked for skew")
    registration: _Registration | None = Field(
        default=None,
        description="the id the node's registration answered with (needed for unnamed tokens)",
    )
    device_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=1024
    )
    sessions: list[SessionMeter] = Field(default_factory=list, max_length=10000)


class DeviceOut(BaseModel):
    node: str
    id: str
    vendor: str
    model: str
    memory_bytes: int
    arch: str
    frameworks: dict[str, str]
    allocated_share: float
    allocated_memory_bytes: int


class NodeOut(BaseModel):
    name: str
    address: str
    status: Literal["ready", "cordoned", "drained", "lost"]
    registered_at: float
    last_heartbeat: float
    devices: list[DeviceOut]


class NodeRegisterOut(BaseModel):
    name: str
    status: Literal["ready", "cordoned", "drained", "lost"]
    last_heartbeat: float
    ticket_key: str = Field(
        description="hex key this node verifies its session tickets with (keep it secret)"
    )
    ticket_keys: list[str] = Field(
        description="every key valid now, current first (two during a secret rotation)"
    )
    registration: str = Field(
        description="this registration's id: show it with heartbeats and admissions (secret)"
    )


class NodeStatusOut(BaseModel):
    name: str
    status: Literal["ready", "cordoned", "drained", "lost"]
    last_heartbeat: float


class NodeHeartbeatOut(BaseModel):
    status: Literal["ready", "cordoned", "drained", "lost"]
    ended_sessions: list[str] = Field(
        description="sessions on this node the pool no longer holds a lease for: stop them"
    )
    ticket_keys: list[str] | None = Field(
        default=None, description="the node's ticket keys now, when the registration was shown"
    )


class AdmitIn(BaseModel):
    model_config = _Strict
    registration: _Registration
    ticket: Annotated[str, Field(min_length=1, max_length=4096)]


class AdmitOut(BaseModel):
    session_id: str
    ticket_keys: list[str]


# -------------------------------------------------------------------- sessions


class SliceIn(BaseModel):
    model_config = _Strict
    fraction: Fraction | None = Field(default=None, description="share of one device, in (0, 1]")
    memory: Memory | None = None
    count: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None, description="whole devices on one node (instead of fraction/memory)"
    )
    vendor: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="glob, e.g. '*H100*'"
    )
    min_memory: Memory | None = None
    frameworks: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20, description="e.g. ['torch>=2.4']"
    )
    node: Name | None = None
    team: Name | None = Field(default=None, description="needed when you are in several teams")
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    wait: bool = Field(default=True, description="queue when nothing fits (false: refuse)")
    queue_timeout_s: Annotated[float, Field(ge=0, le=86400 * 365)] | None = None
    policy: PlacementPolicy | None = None
    name: Name | None = Field(default=None, description="your name for the session (not unique)")


class LeaseDeviceOut(BaseModel):
    id: str
    fraction: float
    memory_bytes: int


class SessionOut(BaseModel):
    id: str
    name: str | None = None
    team: str
    user: str
    state: Literal["queued", "placed", "ended"]
    submitted_at: float
    request: dict[str, Any]
    position: int | None = Field(default=None, description="1 is next, while queued")
    reason: str | None = Field(default=None, description="why it waits, or why it ended")
    queue_deadline: float | None = None
    node: str | None = None
    address: str | None = Field(default=None, description="the acceptor to connect to")
    devices: list[LeaseDeviceOut] = Field(default_factory=list)
    share: float = 0.0
    memory_bytes: int = 0
    started_at: float | None = None
    last_heartbeat: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    ticket: str | None = Field(
        default=None, description="signed ticket for the acceptor (only to the session's user)"
    )
    ticket_expires_at: float | None = None
    metering: dict[str, Any] | None = None


# ---------------------------------------------------------------------- groups


class GroupIn(SliceIn):
    """Many slices of one shape: the fields of a slice request, for every member."""

    name: Name | None = Field(default=None, description="for people (default: the id)")
    max_count: Annotated[int, Field(ge=1, le=10_000)] = Field(
        description="members wanted (slices of this shape)"
    )
    min_count: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None,
        description="place only once at least this many fit (default max_count: all or none)",
    )


class GroupMemberOut(SessionOut):
    index: int | None = Field(default=None, description="the member's index in its group")


class GroupOut(BaseModel):
    id: str
    name: str
    team: str
    user: str
    state: Literal["queued", "placed", "ended"]
    min_count: int
    max_count: int
    placed_count: int = Field(description="members placed (0 until the group is)")
    running: int = Field(description="members whose lease is open")
    ended: int = Field(description="members whose lease has ended")
    request: dict[str, Any]
    policy: str | None = None
    position: int | None = Field(default=None, description="1 is next, while queued")
    submitted_at: float
    queue_deadline: float | None = None
    placed_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    reason: str | None = Field(default=None, description="why it waits, or why it ended")
    members: list[GroupMemberOut] = Field(default_factory=list)


class GroupUsageRow(BaseModel):
    month: str
    team: str
    group: str
    group_id: str
    user: str
    members: int
    device_seconds: float
    memory_gib_seconds: float
    sessions: int
    peak_share: float


class GroupUsageOut(BaseModel):
    rows: list[GroupUsageRow]


class TicketIn(BaseModel):
    model_config = _Strict
    ticket: Annotated[str, Field(min_length=1, max_length=8192)]
    node: Name | None = Field(default=None, description="the node it is for (admins)")


class TicketOut(BaseModel):
    valid: bool
    claims: dict[str, Any]


# ----------------------------------------------------------------------- usage


class UsageRow(BaseModel):
    month: str
    team: str
    user: str = Field(description="'*' for the team's total")
    device_seconds: float
    memory_gib_seconds: float
    sessions: int
    peak_share: float


class UsageOut(BaseModel):
    rows: list[UsageRow]


class StatusOut(BaseModel):
    nodes: list[NodeOut]
    sessions: list[SessionOut]
    queue_length: int
