"""The reactive engine: declare what data is, and every derived value stays right.

import reactive as r
from storage import SQLiteStorage

post = r.Entity("Post", properties=[r.Property("title")])
...

The names below are the public surface: the model, the computations, the controller and its
results, interactions, APIs, side effects and the errors to catch. Public submodules:
``reactive.server`` (the aiohttp application), ``reactive.wire`` (JSON on the wire: parsing
bounded bodies), ``reactive.testing`` (verification and property-based testing). Every other
module is the engine's own and may change; code outside this package imports from those.

Two objects users meet without naming their classes: ``controller.storage`` (async reads and
writes that run the computations) and ``ctx.storage`` (the same, synchronous, inside a
transaction). ``controller.backend`` is the storage backend the controller was given.
"""

from reactive.api import API, APIContext, APIError, Param
from reactive.computations import (
    DELETED_STATE,
    NON_DELETED_STATE,
    UNCHANGED,
    Any,
    Average,
    Computation,
    Count,
    Custom,
    Every,
    StateMachine,
    StateNode,
    StateTransfer,
    Summation,
    Transform,
    Trigger,
    WeightedSummation,
)
from reactive.context import TransactionContext
from reactive.controller import Controller
from reactive.custom_deps import OwnFieldsDep, RecordsDep, RelatedDep
from reactive.deps import DictionaryDep
from reactive.errors import (
    ComputationError,
    CycleError,
    MigrationError,
    ModelError,
    ReactiveError,
    SetupError,
)
from reactive.interaction import (
    INTERACTION_EVENT,
    Condition,
    DispatchError,
    DispatchResult,
    Interaction,
    Payload,
    PayloadItem,
)
from reactive.migration_plan import MigrationPlan
from reactive.model import (
    HARD_DELETION_PROPERTY,
    Dictionary,
    Entity,
    HardDeletionProperty,
    NonNullConstraint,
    Property,
    Relation,
    UniqueConstraint,
    record_name,
)
from reactive.outbox import OutboxEvent, OutboxReader
from reactive.recompute import VerifyReport
from reactive.server import create_app
from reactive.side_effects import RecordMutationSideEffect, SideEffectLeases, SideEffectRun
from reactive.views import TYPE_FIELD
from storage import MutationEvent
from storage.outbox import OutboxPosition

__all__ = [
    "API",
    "DELETED_STATE",
    "HARD_DELETION_PROPERTY",
    "INTERACTION_EVENT",
    "NON_DELETED_STATE",
    "TYPE_FIELD",
    "UNCHANGED",
    "APIContext",
    "APIError",
    "Any",
    "Average",
    "Computation",
    "ComputationError",
    "Condition",
    "Controller",
    "Count",
    "Custom",
    "CycleError",
    "Dictionary",
    "DictionaryDep",
    "DispatchError",
    "DispatchResult",
    "Entity",
    "Every",
    "HardDeletionProperty",
    "Interaction",
    "MigrationError",
    "MigrationPlan",
    "ModelError",
    "MutationEvent",
    "NonNullConstraint",
    "OutboxEvent",
    "OutboxPosition",
    "OutboxReader",
    "OwnFieldsDep",
    "Param",
    "Payload",
    "PayloadItem",
    "Property",
    "ReactiveError",
    "RecordMutationSideEffect",
    "RecordsDep",
    "RelatedDep",
    "Relation",
    "SetupError",
    "SideEffectLeases",
    "SideEffectRun",
    "StateMachine",
    "StateNode",
    "StateTransfer",
    "Summation",
    "TransactionContext",
    "Transform",
    "Trigger",
    "UniqueConstraint",
    "VerifyReport",
    "WeightedSummation",
    "create_app",
    "record_name",
]
