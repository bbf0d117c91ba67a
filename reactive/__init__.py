"""The reactive engine: declare what data is, and every derived value stays right.

import reactive as r
from storage import SQLiteStorage

post = r.Entity("Post", properties=[r.Property("title")])
...
"""

from reactive.api import API, APIContext, APIError, Param
from reactive.computations import (
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
from reactive.context import EngineStorage, TransactionContext
from reactive.controller import Controller, ControllerStorage
from reactive.engine import DICTIONARY_RECORD, INTERACTION_EVENT
from reactive.errors import (
    ComputationError,
    CycleError,
    MigrationError,
    ModelError,
    ReactiveError,
    SetupError,
)
from reactive.interaction import (
    Condition,
    DispatchError,
    DispatchResult,
    Interaction,
    Payload,
    PayloadItem,
)
from reactive.migration_plan import Change, MigrationPlan
from reactive.model import Dictionary, Entity, Property, Relation
from reactive.recompute import Difference, VerifyReport
from reactive.server import create_app
from reactive.side_effects import (
    RecordMutationSideEffect,
    SideEffectLeases,
    SideEffectRecord,
    SideEffectRun,
)
from reactive.wire import DEFAULT_MAX_JSON_DEPTH, parse_json
from storage import MutationEvent

__all__ = [
    "API",
    "DEFAULT_MAX_JSON_DEPTH",
    "DICTIONARY_RECORD",
    "INTERACTION_EVENT",
    "UNCHANGED",
    "APIContext",
    "APIError",
    "Any",
    "Average",
    "Change",
    "Computation",
    "ComputationError",
    "Condition",
    "Controller",
    "ControllerStorage",
    "Count",
    "Custom",
    "CycleError",
    "Dictionary",
    "Difference",
    "DispatchError",
    "DispatchResult",
    "EngineStorage",
    "Entity",
    "Every",
    "Interaction",
    "MigrationError",
    "MigrationPlan",
    "ModelError",
    "MutationEvent",
    "Param",
    "Payload",
    "PayloadItem",
    "Property",
    "ReactiveError",
    "RecordMutationSideEffect",
    "Relation",
    "SetupError",
    "SideEffectLeases",
    "SideEffectRecord",
    "SideEffectRun",
    "StateMachine",
    "StateNode",
    "StateTransfer",
    "Summation",
    "TransactionContext",
    "Transform",
    "Trigger",
    "VerifyReport",
    "WeightedSummation",
    "create_app",
    "parse_json",
]
