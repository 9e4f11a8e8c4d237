"""The protocol's vocabulary shared by events, commands and the journal: roles, tasks, stages.

Names follow the Cortensor design (docs/NODE.md, docs/CHAIN.md) so an operator recognises them.
They are `StrEnum`s so they serialise as plain strings in JSON and in the database.
"""

from __future__ import annotations

from enum import StrEnum


class NodeRole(StrEnum):
    MINER = "miner"
    ORACLE = "oracle"


class TaskKind(StrEnum):
    """Network tasks (Cognitive, PoUW) or user tasks (SessionQueue)."""

    NETWORK = "network"
    USER = "user"


class TaskRole(StrEnum):
    """The part a node plays in one task."""

    CREATOR = "creator"
    PREPARER = "preparer"
    ANSWERER = "answerer"
    ORACLE = "oracle"


class NetworkStage(StrEnum):
    """The PoUW state machine of a network task, in order."""

    REQUEST = "request"
    CREATE = "create"
    PREPARE = "prepare"
    START = "start"
    PRECOMMIT = "precommit"
    COMMIT = "commit"
    END = "end"


class UserStage(StrEnum):
    """A user task's life on one miner, in order."""

    ASSIGNED = "assigned"
    ACK = "ack"
    PRECOMMIT = "precommit"
    COMMIT = "commit"
    VALIDATED = "validated"
    PAID = "paid"
