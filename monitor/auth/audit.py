"""The audit log: who did what, when, with what result; a keyed hash chain with checkpoints.

Each row's hash is an HMAC (key `MONITOR_AUDIT_KEY`, never stored in the database) over its
id, its content and its predecessor's hash. Without the key, an edited row cannot be given a
hash that verifies, nor can the rows after it be re-chained. What a chain alone cannot show is
rows cut off its end; for that, signed checkpoints (the head row's id and hash at a moment) are
written outside the table: appended to a file (`MONITOR_AUDIT_CHECKPOINT_PATH`) and to the
service log. `audit verify` checks the chain and then every checkpoint: a checkpointed row that
is gone, or changed, shows.

Rows written before the chain was keyed (scheme 1: plain SHA-256 without the row id) still
verify as they were; every row after the first keyed one must be keyed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import pathlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, insert, text
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from monitor.auth.tokens import Principal
from monitor.settings import Settings
from monitor.storage.models import AuditLogRow
from policies.decisions import utc_text

log = logging.getLogger("monitor.audit")

GENESIS_HASH = "0" * 64
LEGACY_SCHEME = 1  # SHA-256 over the content, no key, no row id (before issue 11)
KEYED_SCHEME = 2  # HMAC-SHA256 over the row id, the content and the previous hash
KEY_FILE = "audit.key"
MIN_KEY_CHARS = 32
COMMAND_LINE = "command-line"
ANONYMOUS = "anonymous"  # the actor of a request refused before anyone was identified


class AuditKeyError(RuntimeError):
    """No usable audit key: production processes need MONITOR_AUDIT_KEY."""


def resolve_key(settings: Settings) -> bytes:
    """MONITOR_AUDIT_KEY; in the embedded mode, a key generated once and kept in
    `{data_dir}/audit.key` (mode 0600); in production, its absence is an error."""
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value().encode()
    if not settings.embedded:
        raise AuditKeyError(
            "MONITOR_AUDIT_KEY is required in production (a random secret of at least "
            f"{MIN_KEY_CHARS} characters, e.g. from `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`): it keys the audit log's hash chain"
        )
    path = settings.data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this installation made it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


@dataclass(frozen=True, slots=True)
class ChainReport:
    rows: int
    broken_at: int | None  # the id of the first row that does not verify
    reason: str | None
    checkpoints: int = 0  # checkpoints that verified


@dataclass(frozen=True, slots=True)
class Checkpoint:
    at: str
    head_id: int
    head_hash: str
    signature: str

    def as_json(self) -> str:
        return json.dumps(
            {
                "at": self.at,
                "head_id": self.head_id,
                "head_hash": self.head_hash,
                "signature": self.signature,
            }
        )


def _content(row: AuditLogRow) -> list[str]:
    return _fields(row.at, row.actor, row.role, row.action, row.resource, row.status_code)


def _fields(
    at: dt.datetime, actor: str, role: str, action: str, resource: str, status: int
) -> list[str]:
    """The hashed content of a row, from its column values (as written, or as read back)."""
    return [at.astimezone(dt.UTC).isoformat(), actor, role, action, resource, str(status)]


_TABLE = AuditLogRow.__table__  # type: ignore[attr-defined]
_LOCK = text("SELECT pg_advisory_xact_lock(7301)")
# a statement of its own after the lock: its snapshot then holds the last holder's row
_NEXT_POSTGRESQL = text(
    "SELECT nextval(pg_get_serial_sequence('audit_log', 'id')), "
    "(SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1)"
)
_HEAD = (
    select(col(AuditLogRow.id), col(AuditLogRow.row_hash))
    .order_by(col(AuditLogRow.id).desc())
    .limit(1)
)
_INSERT = insert(_TABLE)


def _with_scope(principal: Principal, resource: str) -> str:
    """The resource as audited: with the caller's units when its token is bound to some."""
    return resource if principal.units is None else f"{resource} ({principal.scope})"


def _legacy_hash(row: AuditLogRow) -> str:
    fields = (row.prev_hash, *_content(row))
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


class AuditLog:
    """Appends rows, verifies the chain, writes and checks checkpoints. The key is resolved on
    first use (`require_key` at start-up makes a production process fail fast without it)."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._key: bytes | None = None
        self._checkpointed: float | None = None  # monotonic time of the last periodic one
        self.checkpoint_path: pathlib.Path = (
            settings.audit_checkpoint_path or settings.data_dir / "audit-checkpoints.jsonl"
        )

    def require_key(self) -> None:
        self._secret()

    def _secret(self) -> bytes:
        if self._key is None:
            self._key = resolve_key(self._settings)
        return self._key

    def _mac(self, *fields: str) -> str:
        message = "\x1f".join(fields).encode()
        return hmac.new(self._secret(), message, hashlib.sha256).hexdigest()

    def _row_hash(self, row: AuditLogRow) -> str:
        return self._mac(str(row.id), row.prev_hash, *_content(row))

    # --- appending ------------------------------------------------------------------------

    def record(
        self,
        principal: Principal,
        action: str,
        resource: str,
        status_code: int,
        now: dt.datetime,
    ) -> None:
        """Append one row chained to the last. No clinical payload: who, what, when, result;
        a token bound to units has its scope recorded with the resource."""
        resource = _with_scope(principal, resource)
        self._append(principal.name, principal.role, action, resource, status_code, now)

    def record_in(
        self,
        connection: Connection,
        principal: Principal,
        action: str,
        resource: str,
        status_code: int,
        now: dt.datetime,
    ) -> None:
        """`record` inside the caller's transaction (the events' of `POST /v1/events`): the row
        commits with what it records, or neither does, for one commit instead of two. Call it
        last in the transaction: the chain's lock is held from here to the commit."""
        resource = _with_scope(principal, resource)
        self._append_on(
            connection, principal.name, principal.role, action, resource, status_code, now
        )

    def record_invite(
        self, invite_id: int, action: str, resource: str, status_code: int, now: dt.datetime
    ) -> None:
        """A patient's use of an invite link (monitor/intake): the actor is the invite by id,
        never its secret nor a name."""
        self._append(f"invite:{invite_id}", "patient", action, resource, status_code, now)

    def record_command(self, action: str, resource: str, now: dt.datetime) -> None:
        """An operator's command that changes clinical state (`policy upgrade`): run on the
        service's host, so the actor is the command line, not a token."""
        self._append(COMMAND_LINE, "operator", action, resource, 0, now)

    def record_refusal(
        self, action: str, status_code: int, now: dt.datetime, actor: str | None = None
    ) -> None:
        """A request refused before anyone was identified (401): the route, the answer; or
        refused although identified (`actor`: a signed-in subject given no role here, 403)."""
        self._append(actor or ANONYMOUS, "none", action, "-", status_code, now)

    def _append(
        self, actor: str, role: str, action: str, resource: str, status: int, now: dt.datetime
    ) -> None:
        """One row chained to the last, in core statements (no ORM unit of work: this runs at
        every request). PostgreSQL: the advisory lock, then the next id and the last hash in one
        statement (after the lock, so it sees the holder before us), then one INSERT with the
        row's hash: the id is part of the hash, so it is taken before the row is written.
        SQLite: its write lock is taken at BEGIN; the id is the last one + 1, as SQLite's own
        would be."""
        with self._sessions.begin() as session:
            self._append_on(session.connection(), actor, role, action, resource, status, now)

    def _append_on(
        self,
        connection: Connection,
        actor: str,
        role: str,
        action: str,
        resource: str,
        status: int,
        now: dt.datetime,
    ) -> None:
        self._secret()  # before taking the lock: a missing key fails without writing
        actor, role, action, resource = actor[:64], role[:16], action[:128], resource[:256]
        content = _fields(now, actor, role, action, resource, status)
        if connection.dialect.name == "postgresql":
            # one appender at a time, or two rows would chain to the same predecessor
            connection.execute(_LOCK)
            row_id, last = connection.execute(_NEXT_POSTGRESQL).one()
        else:
            head = connection.execute(_HEAD).first()
            row_id, last = (1, None) if head is None else (int(head[0] or 0) + 1, head[1])
        prev_hash = last or GENESIS_HASH
        connection.execute(
            _INSERT,
            {
                "id": row_id,
                "at": now,
                "actor": actor,
                "role": role,
                "action": action,
                "resource": resource,
                "status_code": status,
                "prev_hash": prev_hash,
                "row_hash": self._mac(str(row_id), prev_hash, *content),
                "scheme": KEYED_SCHEME,
            },
        )

    # --- verifying ------------------------------------------------------------------------

    def verify(self, *, checkpoints: bool = True) -> ChainReport:
        """Recompute every row's hash from its predecessor; the first mismatch is reported.
        Then each checkpoint (signature, and the row it names, still there and unchanged)."""
        previous = GENESIS_HASH
        count = 0
        keyed_seen = False
        hashes: dict[int, str] = {}
        signed = self._read_checkpoints() if checkpoints else []
        wanted = {c.head_id for c in signed}
        last_id = 0
        with self._sessions() as session:
            for row in self._rows(session):
                count += 1
                assert row.id is not None
                last_id = row.id
                if row.prev_hash != previous:
                    return ChainReport(count, row.id, "prev_hash does not match the previous row")
                if row.scheme == KEYED_SCHEME:
                    keyed_seen = True
                    expected = self._row_hash(row)
                elif keyed_seen:
                    return ChainReport(count, row.id, "an unkeyed row after keyed rows")
                else:
                    expected = _legacy_hash(row)
                if not hmac.compare_digest(expected, row.row_hash):
                    return ChainReport(count, row.id, "row_hash does not match the row's content")
                if row.id in wanted:
                    hashes[row.id] = row.row_hash
                previous = row.row_hash
        if not checkpoints:
            return ChainReport(count, None, None)
        return self._check_checkpoints(signed, count, last_id, hashes)

    @staticmethod
    def _rows(session: Session) -> Iterator[AuditLogRow]:
        query = select(AuditLogRow).order_by(col(AuditLogRow.id))
        yield from session.execute(query.execution_options(yield_per=1000)).scalars()

    def _check_checkpoints(
        self, signed: list[Checkpoint], count: int, last_id: int, hashes: dict[int, str]
    ) -> ChainReport:
        verified = 0
        for checkpoint in signed:
            expected = self._mac(
                "checkpoint", checkpoint.at, str(checkpoint.head_id), checkpoint.head_hash
            )
            if not hmac.compare_digest(expected, checkpoint.signature):
                return ChainReport(
                    count,
                    checkpoint.head_id,
                    f"the checkpoint of {checkpoint.at} is not signed with this key",
                    verified,
                )
            stored = hashes.get(checkpoint.head_id)
            if stored is None:
                return ChainReport(
                    count,
                    checkpoint.head_id,
                    f"row {checkpoint.head_id}, the head at the checkpoint of {checkpoint.at}, "
                    f"is gone (the log ends at row {last_id}): rows were cut off its end",
                    verified,
                )
            if stored != checkpoint.head_hash:
                return ChainReport(
                    count,
                    checkpoint.head_id,
                    f"row {checkpoint.head_id} differs from the checkpoint of {checkpoint.at}",
                    verified,
                )
            verified += 1
        return ChainReport(count, None, None, verified)

    # --- checkpoints ----------------------------------------------------------------------

    def _read_checkpoints(self) -> list[Checkpoint]:
        """The checkpoint file; it may also be the service's JSON log (its `audit checkpoint`
        lines are checkpoints, its other lines are skipped)."""
        try:
            lines = self.checkpoint_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if "message" in data and data["message"] != "audit checkpoint":
                    continue  # another line of a log
                found.append(
                    Checkpoint(
                        str(data.get("at") or data["checkpoint_at"]),
                        int(data["head_id"]),
                        str(data["head_hash"]),
                        str(data["signature"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                raise ValueError(
                    f"{self.checkpoint_path}: line {number} is not a checkpoint"
                ) from None
        return found

    def periodic_checkpoint(self, now: dt.datetime, interval_s: float) -> Checkpoint | None:
        """`checkpoint` at most once per `interval_s` of this process's monotonic clock."""
        moment = time.monotonic()
        if self._checkpointed is not None and moment - self._checkpointed < interval_s:
            return None
        self._checkpointed = moment
        return self.checkpoint(now)

    def checkpoint(self, now: dt.datetime) -> Checkpoint | None:
        """Sign the head of the chain as it is now, append it to the checkpoint file and the
        log; nothing when the head has not moved since the last checkpoint (or there is none)."""
        with self._sessions() as session:
            head = session.execute(
                select(col(AuditLogRow.id), col(AuditLogRow.row_hash))
                .order_by(col(AuditLogRow.id).desc())
                .limit(1)
            ).first()
        if head is None:
            return None
        head_id, head_hash = int(head[0]), str(head[1])
        existing = self._read_checkpoints()
        if existing and existing[-1].head_id == head_id and existing[-1].head_hash == head_hash:
            return None
        at = utc_text(now)
        checkpoint = Checkpoint(
            at, head_id, head_hash, self._mac("checkpoint", at, str(head_id), head_hash)
        )
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        with self.checkpoint_path.open("a") as handle:
            handle.write(checkpoint.as_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        log.info(
            "audit checkpoint",
            extra={
                "head_id": head_id,
                "head_hash": head_hash,
                "signature": checkpoint.signature,
                "checkpoint_at": at,
            },
        )
        return checkpoint
