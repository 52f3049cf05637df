"""Who may use the pool: teams, users, memberships, tokens, and access checks.

The part of :class:`~tether.pool._service.PoolService` that touches no policy:
plain reads and writes of the store behind admin checks. The access rules
(``require_*``, :func:`visible_team_ids`) are functions every part uses.
"""

from __future__ import annotations

from collections.abc import Callable

from tether.pool._accounts import UserRow
from tether.pool._auth import Principal
from tether.pool._db import Tx
from tether.pool._store import Store
from tether.pool._views import IssuedToken, MeView, QuotaView, TeamView, TokenView, UserView
from tether.poolapi import Forbidden, NotFound, PoolRequestError

__all__ = [
    "Directory",
    "require_admin",
    "require_node",
    "require_team",
    "require_user",
    "visible_team_ids",
]


class Directory:
    """Teams, users and tokens, read and written behind the access rules."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self._clock = clock

    def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token; AuthenticationError if wrong or revoked."""
        return self.store.authenticate(token)

    def me(self, principal: Principal) -> MeView:
        with self.store.db.transaction() as tx:
            ids = self.store.team_ids_tx(tx)
        names = {v: k for k, v in ids.items()}
        return MeView(
            kind=principal.kind,
            user=principal.user_name,
            admin=principal.is_admin,
            teams=tuple(sorted(names[t] for t in principal.team_ids if t in names)),
            node=principal.node_name,
        )

    def teams(self, principal: Principal) -> list[TeamView]:
        require_user(principal)
        return [
            TeamView(name=t.name, created_at=t.created_at)
            for t in self.store.teams()
            if principal.can_see_team(t.id)
        ]

    def create_team(self, principal: Principal, name: str) -> TeamView:
        require_admin(principal)
        team = self.store.create_team(name, self._clock())
        return TeamView(name=team.name, created_at=team.created_at)

    def delete_team(self, principal: Principal, name: str) -> None:
        require_admin(principal)
        self.store.delete_team(name)

    @staticmethod
    def _user_out(user: UserRow) -> UserView:
        return UserView(
            name=user.name, admin=user.is_admin, teams=tuple(user.teams), created_at=user.created_at
        )

    def users(self, principal: Principal) -> list[UserView]:
        require_user(principal)
        if principal.is_admin:
            return [self._user_out(u) for u in self.store.users()]
        assert principal.user_name is not None
        return [self._user_out(self.store.user(principal.user_name))]

    def create_user(
        self, principal: Principal, *, name: str, admin: bool, teams: list[str]
    ) -> UserView:
        require_admin(principal)
        user = self.store.create_user(name, is_admin=admin, teams=teams, now=self._clock())
        return self._user_out(user)

    def set_membership(
        self, principal: Principal, team: str, user: str, *, member: bool
    ) -> UserView:
        require_admin(principal)
        return self._user_out(self.store.set_membership(team, user, member=member))

    def tokens(self, principal: Principal, user: str | None) -> list[TokenView]:
        require_user(principal)
        if not principal.is_admin:
            if user is not None and user != principal.user_name:
                raise Forbidden("you can list only your own tokens")
            user = principal.user_name
        return [TokenView.of(t) for t in self.store.tokens(user)]

    def create_token(
        self,
        principal: Principal,
        *,
        kind: str,
        user: str | None,
        node: str | None,
        label: str,
    ) -> IssuedToken:
        """Issue a token. Users may issue user tokens for themselves; the rest is admin's."""
        require_user(principal)
        if kind == "user":
            if node is not None:
                raise PoolRequestError("a user token cannot name a node")
            user = user or principal.user_name
            if user != principal.user_name and not principal.is_admin:
                raise Forbidden("only admins can issue tokens for other users")
        else:
            require_admin(principal)
            if user is not None:
                raise PoolRequestError("a node token cannot name a user")
        record, text = self.store.create_token(
            kind="node" if kind == "node" else "user",
            user=user,
            node_name=node,
            label=label,
            now=self._clock(),
        )
        return IssuedToken.of(record, token=text)

    def revoke_token(self, principal: Principal, token_id: str) -> TokenView:
        require_user(principal)
        record = self.store.token(token_id)
        if not principal.is_admin and record.user_name != principal.user_name:
            raise NotFound(f"no token with id {token_id!r} among yours")
        return TokenView.of(self.store.revoke_token(token_id, self._clock()))

    def quota(self, principal: Principal, team: str) -> QuotaView:
        require_user(principal)
        row = self.store.team(team)
        require_team(principal, row.id, what=f"team {team!r}")
        return QuotaView.of(self.store.quota(team))


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this needs an admin token")


def require_user(principal: Principal) -> None:
    if principal.kind != "user":
        raise Forbidden("node tokens can only register and heartbeat nodes")


def require_node(principal: Principal, name: str) -> None:
    if principal.kind != "node":
        raise Forbidden("registering and heartbeating nodes needs a node token")
    if principal.node_name is not None and principal.node_name != name:
        raise Forbidden(f"this node token is for node {principal.node_name!r}, not {name!r}")


def require_team(principal: Principal, team_id: str, *, what: str) -> None:
    if principal.kind != "user":
        raise Forbidden("node tokens cannot see sessions or usage")
    if not principal.can_see_team(team_id):
        # 404, not 403: other teams' session ids are not to be probed.
        raise NotFound(f"no {what} among your teams")


def visible_team_ids(
    store: Store, tx: Tx, principal: Principal, team: str | None
) -> list[str] | None:
    """The ids of the teams whose sessions and usage ``principal`` asks to see.

    ``team`` names one team (NotFound if there is none or the principal may
    not see it); None means all the principal may see: every team (None)
    for an admin, else the principal's own.
    """
    if team is not None:
        ids = store.team_ids_tx(tx)
        if team not in ids:
            raise NotFound(f"no team named {team!r}")
        require_team(principal, ids[team], what=f"team {team!r}")
        return [ids[team]]
    return None if principal.is_admin else sorted(principal.team_ids)
