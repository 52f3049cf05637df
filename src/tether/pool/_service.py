"""The pool service: everything the HTTP API can ask of the pool, behind one facade.

:class:`PoolService` is built by composition: one :class:`~tether.pool._core.ServiceCore`
owns the policy's state and the write path (one serialised transaction per
batch of changes; its docstring tells how changes, restarts and replicas work),
and each part holds that core and adds one area:

- :class:`~tether.pool._directory.Directory`: teams, users, tokens (no policy);
- :class:`~tether.pool._nodes.Nodes`: registration, heartbeats, admission of
  tickets, cordon and drain, the node and device listings;
- :class:`~tether.pool._sessions.Sessions`: asking for a slice, reading,
  heartbeating and releasing it, its ticket;
- :class:`~tether.pool._group_sessions.Groups`: groups of slices (whose members
  are sessions, shown by ``Sessions``);
- :class:`~tether.pool._accounting.Accounting`: quotas, usage, /metrics figures.

The facade only delegates; its methods are what ``_api``, ``_ui`` and the CLI call.
It is typed both ways: requests come in as the orders of :mod:`tether.pool._orders`
(the HTTP layer parses each body into one, once), and answers go out as the
frozen views of :mod:`tether.pool._views` and :mod:`tether.pool._session_views`,
each with the ``to_json()`` the API sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tether.pool._accounting import Accounting
from tether.pool._auth import Principal
from tether.pool._core import ServiceConfig, ServiceCore
from tether.pool._directory import Directory, require_node
from tether.pool._group_sessions import Groups
from tether.pool._metering import SessionReport
from tether.pool._model import DeviceSpec
from tether.pool._nodes import Nodes
from tether.pool._orders import GroupOrder, SliceOrder
from tether.pool._persist import Counters
from tether.pool._secrets import SecretSource
from tether.pool._session_views import GroupView, SessionView, TicketCheck
from tether.pool._sessions import Sessions
from tether.pool._store import Store
from tether.pool._usage_views import GroupUsageView, Statistics, UsageView
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

__all__ = ["PoolService", "ServiceConfig"]


class PoolService:
    """Everything the HTTP API can ask of the pool, for one principal at a time.

    Methods raise :mod:`tether.poolapi._problems` errors for requests the caller
    may not make or that are wrong, and :class:`AuthenticationError` only from
    :meth:`authenticate`. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        secret: SecretSource | None = None,
    ) -> None:
        self.core = ServiceCore(store, config, clock=clock, secret=secret)
        self.store = store
        self.config = self.core.config
        self.directory = Directory(store, clock)
        self.node_part = Nodes(self.core)
        self.session_part = Sessions(self.core)
        self.group_part = Groups(self.core, self.session_part)
        self.accounting = Accounting(self.core)

    @property
    def counters(self) -> Counters:
        return self.core.counters

    # ================================================================ core

    def start(self) -> None:
        """Restore the policy from the database (start-up), ending what is overdue."""
        self.core.start()

    def tick(self) -> None:
        """Let time pass: lose silent nodes, expire leases, time out the queue."""
        self.core.tick()

    def next_deadline(self) -> float | None:
        return self.core.next_deadline()

    # ================================================================ directory

    def authenticate(self, token: str) -> Principal:
        return self.directory.authenticate(token)

    def me(self, principal: Principal) -> MeView:
        return self.directory.me(principal)

    def teams(self, principal: Principal) -> list[TeamView]:
        return self.directory.teams(principal)

    def create_team(self, principal: Principal, name: str) -> TeamView:
        return self.directory.create_team(principal, name)

    def delete_team(self, principal: Principal, name: str) -> None:
        self.directory.delete_team(principal, name)

    def users(self, principal: Principal) -> list[UserView]:
        return self.directory.users(principal)

    def create_user(
        self, principal: Principal, *, name: str, admin: bool, teams: list[str]
    ) -> UserView:
        return self.directory.create_user(principal, name=name, admin=admin, teams=teams)

    def set_membership(
        self, principal: Principal, team: str, user: str, *, member: bool
    ) -> UserView:
        return self.directory.set_membership(principal, team, user, member=member)

    def tokens(self, principal: Principal, user: str | None) -> list[TokenView]:
        return self.directory.tokens(principal, user)

    def create_token(
        self, principal: Principal, *, kind: str, user: str | None, node: str | None, label: str
    ) -> IssuedToken:
        return self.directory.create_token(principal, kind=kind, user=user, node=node, label=label)

    def revoke_token(self, principal: Principal, token_id: str) -> TokenView:
        return self.directory.revoke_token(principal, token_id)

    def quota(self, principal: Principal, team: str) -> QuotaView:
        return self.directory.quota(principal, team)

    # ================================================================ nodes

    def register_node(
        self,
        principal: Principal,
        *,
        name: str,
        address: str,
        devices: Sequence[DeviceSpec],
        replace: bool,
        sent_at: float | None,
    ) -> NodeRegistration:
        return self.node_part.register_node(
            principal, name=name, address=address, devices=devices, replace=replace, sent_at=sent_at
        )

    def require_node(self, principal: Principal, name: str) -> None:
        """Raises what :meth:`register_node` and :meth:`node_heartbeat` raise for a
        token that may not act for node ``name`` (Forbidden); nothing otherwise."""
        require_node(principal, name)

    def node_heartbeat(
        self,
        principal: Principal,
        name: str,
        *,
        sent_at: float,
        device_ids: list[str] | None,
        sessions: Sequence[SessionReport],
        registration: str | None = None,
    ) -> NodeBeatReply:
        return self.node_part.node_heartbeat(
            principal,
            name,
            sent_at=sent_at,
            device_ids=device_ids,
            sessions=sessions,
            registration=registration,
        )

    def admit(
        self, principal: Principal, name: str, *, registration: str, ticket: str
    ) -> Admission:
        return self.node_part.admit(principal, name, registration=registration, ticket=ticket)

    def node_admin(self, principal: Principal, name: str, action: str) -> NodeStatusView:
        return self.node_part.node_admin(principal, name, action)

    def nodes(self) -> list[NodeView]:
        return self.node_part.nodes()

    def devices(self) -> list[DeviceView]:
        return self.node_part.devices()

    # ================================================================ sessions

    def request_slice(self, principal: Principal, order: SliceOrder) -> SessionView:
        """Place, queue or refuse ``order`` (RefusedError); the session."""
        return self.session_part.request_slice(principal, order)

    def team_for(self, principal: Principal, team: str | None) -> str:
        """The team an order of ``principal`` naming ``team`` (None: none) is for;
        raises what :meth:`request_slice` raises for a team it may not order for."""
        return self.session_part.team_for(principal, team)[0]

    def session(self, principal: Principal, session_id: str) -> SessionView:
        return self.session_part.session(principal, session_id)

    def sessions(
        self, principal: Principal, *, state: str | None = None, team: str | None = None
    ) -> list[SessionView]:
        return self.session_part.sessions(principal, state=state, team=team)

    def heartbeat(self, principal: Principal, session_id: str) -> SessionView:
        return self.session_part.heartbeat(principal, session_id)

    def release(self, principal: Principal, session_id: str) -> SessionView:
        return self.session_part.release(principal, session_id)

    def verify_ticket(self, principal: Principal, ticket: str, node: str | None) -> TicketCheck:
        return self.session_part.verify_ticket(principal, ticket, node)

    # ================================================================ groups

    def request_group(self, principal: Principal, order: GroupOrder) -> GroupView:
        """Place, queue or refuse ``order`` as one unit (RefusedError); the group."""
        return self.group_part.request_group(principal, order)

    def group(self, principal: Principal, ref: str) -> GroupView:
        return self.group_part.group(principal, ref)

    def group_member(self, principal: Principal, ref: str, index: int) -> SessionView:
        return self.group_part.group_member(principal, ref, index)

    def groups(
        self, principal: Principal, *, team: str | None = None, state: str | None = None
    ) -> list[GroupView]:
        return self.group_part.groups(principal, team=team, state=state)

    def cancel_group(self, principal: Principal, ref: str) -> GroupView:
        return self.group_part.cancel_group(principal, ref)

    def group_usage(
        self, principal: Principal, *, team: str | None, month: str | None
    ) -> list[GroupUsageView]:
        return self.group_part.group_usage(principal, team=team, month=month)

    # ================================================================ accounting

    def set_quota(
        self,
        principal: Principal,
        team: str,
        *,
        max_share: float | None,
        max_memory: str | int | None,
        device_hours_per_month: float | None,
    ) -> QuotaView:
        return self.accounting.set_quota(
            principal,
            team,
            max_share=max_share,
            max_memory=max_memory,
            device_hours_per_month=device_hours_per_month,
        )

    def usage(
        self, principal: Principal, *, team: str | None, user: str | None, month: str | None
    ) -> list[UsageView]:
        """Rows per (month, team, user) plus each team's total (user ``*``)."""
        return self.accounting.usage(principal, team=team, user=user, month=month)

    def statistics(self) -> Statistics:
        """Figures for /metrics, from the database (right under any replica)."""
        return self.accounting.statistics()
