"""Who is in the pool database: teams, users, memberships and tokens.

:class:`AccountStore` is the part of :class:`~tether.pool._store.Store` that
reads and writes those rows and checks a token's text against its stored hash
(:mod:`tether.pool._auth` does the hashing). Like the rest of the store it
holds no policy, never reads a clock (callers pass ``now``), and runs each
method in one transaction of its own. Lookups of names that do not exist raise
:class:`NotFound`; creating a duplicate raises :class:`Conflict`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tether._errors import AuthenticationError
from tether.pool import _auth
from tether.pool._db import Database, Tx
from tether.poolapi import Conflict, NotFound, PoolRequestError

__all__ = ["AccountStore", "TeamRow", "TokenRecord", "UserRow", "new_id"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamRow:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRow:
    id: str
    name: str
    is_admin: bool
    created_at: float
    teams: tuple[str, ...]  # team names


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    id: str
    kind: _auth.TokenKind
    user_name: str | None
    node_name: str | None
    label: str
    created_at: float
    revoked_at: float | None


def new_id() -> str:
    return secrets.token_hex(8)


class AccountStore:
    """Teams, users, memberships and tokens; see the module docstring."""

    db: Database

    def create_team(self, name: str, now: float) -> TeamRow:
        with self.db.transaction(serialize=True) as tx:
            if tx.one("SELECT id FROM teams WHERE name = ?", (name,)):
                raise Conflict(f"team {name!r} already exists")
            team = TeamRow(id=new_id(), name=name, created_at=now)
            tx.execute(
                "INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)",
                (team.id, team.name, team.created_at),
            )
            return team

    def delete_team(self, name: str) -> None:
        with self.db.transaction(serialize=True) as tx:
            team = self._team(tx, name)
            if tx.one("SELECT id FROM sessions WHERE team_id = ? LIMIT 1", (team.id,)):
                raise Conflict(
                    f"team {name!r} has sessions on record (its usage history); "
                    "remove its members instead of the team"
                )
            tx.execute("DELETE FROM teams WHERE id = ?", (team.id,))

    def _team(self, tx: Tx, name: str) -> TeamRow:
        row = tx.one("SELECT * FROM teams WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no team named {name!r}")
        return TeamRow(id=row["id"], name=row["name"], created_at=float(row["created_at"]))

    def team(self, name: str) -> TeamRow:
        with self.db.transaction() as tx:
            return self._team(tx, name)

    def teams(self) -> list[TeamRow]:
        with self.db.transaction() as tx:
            rows = tx.all("SELECT * FROM teams ORDER BY name")
        return [
            TeamRow(id=r["id"], name=r["name"], created_at=float(r["created_at"])) for r in rows
        ]

    def create_user(
        self, name: str, *, is_admin: bool, teams: Iterable[str], now: float
    ) -> UserRow:
        with self.db.transaction(serialize=True) as tx:
            if tx.one("SELECT id FROM users WHERE name = ?", (name,)):
                raise Conflict(f"user {name!r} already exists")
            team_rows = [self._team(tx, t) for t in dict.fromkeys(teams)]
            user_id = new_id()
            tx.execute(
                "INSERT INTO users (id, name, is_admin, created_at) VALUES (?, ?, ?, ?)",
                (user_id, name, bool(is_admin), now),
            )
            for team in team_rows:
                tx.execute(
                    "INSERT INTO memberships (team_id, user_id) VALUES (?, ?)", (team.id, user_id)
                )
            return self._user(tx, name)

    def _user(self, tx: Tx, name: str) -> UserRow:
        row = tx.one("SELECT * FROM users WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no user named {name!r}")
        return self._user_row(tx, row)

    def _user_row(self, tx: Tx, row: dict[str, Any]) -> UserRow:
        teams = tx.all(
            "SELECT t.name FROM memberships m JOIN teams t ON t.id = m.team_id "
            "WHERE m.user_id = ? ORDER BY t.name",
            (row["id"],),
        )
        return UserRow(
            id=row["id"],
            name=row["name"],
            is_admin=bool(row["is_admin"]),
            created_at=float(row["created_at"]),
            teams=tuple(t["name"] for t in teams),
        )

    def user(self, name: str) -> UserRow:
        with self.db.transaction() as tx:
            return self._user(tx, name)

    def users(self) -> list[UserRow]:
        with self.db.transaction() as tx:
            return [self._user_row(tx, r) for r in tx.all("SELECT * FROM users ORDER BY name")]

    def user_count(self) -> int:
        with self.db.transaction() as tx:
            row = tx.one("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row else 0

    def set_membership(self, team: str, user: str, *, member: bool) -> UserRow:
        with self.db.transaction(serialize=True) as tx:
            t = self._team(tx, team)
            u = self._user(tx, user)
            if member and team not in u.teams:
                tx.execute("INSERT INTO memberships (team_id, user_id) VALUES (?, ?)", (t.id, u.id))
            elif not member:
                if team not in u.teams:
                    raise NotFound(f"user {user!r} is not a member of team {team!r}")
                tx.execute(
                    "DELETE FROM memberships WHERE team_id = ? AND user_id = ?", (t.id, u.id)
                )
            return self._user(tx, user)

    # ------------------------------------------------------------------ tokens

    def create_token(
        self,
        *,
        kind: _auth.TokenKind,
        user: str | None = None,
        node_name: str | None = None,
        label: str = "",
        now: float,
    ) -> tuple[TokenRecord, str]:
        """Issue a token; returns its record and its text (shown once, never stored)."""
        with self.db.transaction(serialize=True) as tx:
            user_id = None
            if kind == "user":
                if user is None:
                    raise PoolRequestError("a user token needs a user")
                user_id = self._user(tx, user).id
            issued = _auth.issue_token(kind)
            tx.execute(
                "INSERT INTO tokens (id, kind, user_id, node_name, label, hash, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (issued.id, kind, user_id, node_name, label, issued.hash, now),
            )
            return self._token(tx, issued.id), issued.text

    def _token(self, tx: Tx, token_id: str) -> TokenRecord:
        row = tx.one(
            "SELECT k.*, u.name AS user_name FROM tokens k LEFT JOIN users u ON u.id = k.user_id "
            "WHERE k.id = ?",
            (token_id,),
        )
        if row is None:
            raise NotFound(f"no token with id {token_id!r}")
        return TokenRecord(
            id=row["id"],
            kind=row["kind"],
            user_name=row["user_name"],
            node_name=row["node_name"],
            label=row["label"],
            created_at=float(row["created_at"]),
            revoked_at=row["revoked_at"],
        )

    def token(self, token_id: str) -> TokenRecord:
        with self.db.transaction() as tx:
            return self._token(tx, token_id)

    def tokens(self, user: str | None = None) -> list[TokenRecord]:
        with self.db.transaction() as tx:
            if user is None:
                ids = tx.all("SELECT id FROM tokens ORDER BY created_at, id")
            else:
                uid = self._user(tx, user).id
                ids = tx.all(
                    "SELECT id FROM tokens WHERE user_id = ? ORDER BY created_at, id", (uid,)
                )
            return [self._token(tx, r["id"]) for r in ids]

    def revoke_token(self, token_id: str, now: float) -> TokenRecord:
        with self.db.transaction(serialize=True) as tx:
            record = self._token(tx, token_id)
            if record.revoked_at is None:
                tx.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (now, token_id))
            return self._token(tx, token_id)

    def authenticate(self, text: str) -> _auth.Principal:
        """The principal a token's text stands for; raises AuthenticationError.

        One query (the token, its user and the user's teams, one row a team),
        asked on every request: nothing is cached, so a revoked token, a deleted
        user or a changed membership counts from the next request on, whichever
        pool replica made the change.
        """
        kind, token_id = _auth.split_token(text)
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT k.id, k.kind, k.hash, k.revoked_at, k.user_id, k.node_name, "
                "u.id AS uid, u.name AS user_name, u.is_admin, m.team_id, t.name AS team_name "
                "FROM tokens k LEFT JOIN users u ON u.id = k.user_id "
                "LEFT JOIN memberships m ON m.user_id = u.id "
                "LEFT JOIN teams t ON t.id = m.team_id "
                "WHERE k.id = ? AND k.kind = ?",
                (token_id, kind),
            )
        row = rows[0] if rows else None
        token_row = (
            None
            if row is None
            else _auth.TokenRow(
                id=row["id"],
                kind=row["kind"],
                hash=row["hash"],
                revoked=row["revoked_at"] is not None,
                user_id=row["user_id"],
                node_name=row["node_name"],
            )
        )
        _auth.check_token(text, token_row)
        assert row is not None and token_row is not None
        if kind == "node":
            return _auth.Principal(kind="node", token_id=token_id, node_name=token_row.node_name)
        if row["uid"] is None:  # the user was deleted: its tokens die with it
            raise AuthenticationError("invalid token")
        return _auth.Principal(
            kind="user",
            token_id=token_id,
            user_id=row["uid"],
            user_name=row["user_name"],
            is_admin=bool(row["is_admin"]),
            team_ids=frozenset(r["team_id"] for r in rows if r["team_id"] is not None),
            team_names=tuple(
                sorted((r["team_id"], r["team_name"]) for r in rows if r["team_name"] is not None)
            ),
        )
