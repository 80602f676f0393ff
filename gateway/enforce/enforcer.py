"""Enforcing a source's tracking plan on one event (DESIGN §4).

Matching: ``track`` matches on (event name, "track"), exactly; identify/page/screen/group match
on their type with name "". ``alias`` is never validated. Only ``track`` can be unplanned; other
types without a rule pass with no violations. Sources without a plan pass untouched.

Forwarded events of a connected source are stamped in ``context``: ``trackingPlanId``,
``trackingPlanVersion``, ``violationErrors`` (unless propagateValidationErrors is false) and,
when properties were omitted, ``omittedProperties``. Dropped events are not stamped: the
quarantine record carries the same facts beside the event as received.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

from gateway.enforce.compile import CompiledRule
from gateway.enforce.policy import Policy
from gateway.enforce.violations import (
    ADDITIONAL_PROPERTIES,
    Violation,
    unplanned_event_violation,
)
from gateway.outcomes import QuarantineReason
from gateway.plans.snapshot import PlanEvent, Snapshot, Source, TrackingPlan

UNPLANNED_LABEL = "(unplanned)"
# The warm-up thread pauses after each rule it compiles. compile() holds the GIL for a
# millisecond or two; the pause lets the event loop take the GIL uncontested in between.
WARM_PAUSE_S = 0.001


@dataclass(slots=True)
class Decision:
    plan: TrackingPlan
    violations: list[Violation]
    reason: QuarantineReason | None  # None: forward
    # The metrics label for the event: a planned name, the event type, or "(unplanned)".
    event_label: str


class Enforcer:
    """Validates events against plan rules, compiled once per distinct rule.

    Compiled rules are keyed by the rules' digest, so a rule shared by many plans compiles once,
    and a refresh recompiles only rules whose content changed.
    """

    def __init__(self) -> None:
        self._rules: dict[str, CompiledRule] = {}
        # The snapshot a warm-up may work on; replaced on swap, cleared on stop, so an
        # outdated warm-up thread notices and ends early.
        self._warming: Snapshot | None = None

    def rule(self, planned: PlanEvent) -> CompiledRule:
        """The compiled rule of a plan event; compiled on first use and then kept."""
        compiled = self._rules.get(planned.fingerprint)
        if compiled is None:
            compiled = self._rules[planned.fingerprint] = CompiledRule(planned.rules)
        return compiled

    def warm(self, snapshot: Snapshot) -> None:
        """Compile every rule of the snapshot ahead of traffic (runs in a worker thread).

        Lazy compilation on first use stays the fallback, so requests never wait for this;
        compiling twice in a race is harmless (the last result wins, both are equal). The
        compiled rules are then exempt from the cyclic garbage collector, as the snapshot is.
        """
        for plan in list(snapshot.tracking_plans.values()):
            for planned in plan.events:
                if self._warming is not snapshot:
                    return
                if planned.fingerprint not in self._rules:
                    self.rule(planned)
                    time.sleep(WARM_PAUSE_S)
        gc.freeze()

    def stop_warming(self) -> None:
        self._warming = None

    def retain(self, snapshot: Snapshot) -> None:
        """Forget compiled rules the new snapshot no longer has (called on every swap).

        Runs on the event loop: it looks only at the distinct rules, never at every plan event.
        """
        live = snapshot.rules
        self._rules = {fp: rule for fp, rule in self._rules.items() if fp in live}
        self._warming = snapshot

    def enforce(self, event: dict[str, Any], source: Source, snapshot: Snapshot) -> Decision | None:
        """Validate and apply the policy; None when the source has no plan (pass through)."""
        plan = snapshot.plan_for(source)
        if plan is None or source.tracking_plan is None:
            return None
        event_type: str = event["type"]
        policy = source.tracking_plan.policies[event_type]
        violations, label = self._validate(event, event_type, plan)
        reason = policy.drop_reason(violations)
        if reason is None:
            _stamp(event, plan, violations, policy)
        return Decision(plan, violations, reason, label)

    def _validate(
        self, event: dict[str, Any], event_type: str, plan: TrackingPlan
    ) -> tuple[list[Violation], str]:
        if event_type == "alias":
            return [], event_type
        name = event.get("event", "") if event_type == "track" else ""
        planned = plan.event(event_type, name)
        if planned is None:
            if event_type == "track":
                return [unplanned_event_violation(name)], UNPLANNED_LABEL
            return [], event_type
        label = name if event_type == "track" else event_type
        rule = self.rule(planned)
        if rule.is_valid(event):
            return [], label
        return rule.violations(event), label


def _stamp(
    event: dict[str, Any], plan: TrackingPlan, violations: list[Violation], policy: Policy
) -> None:
    """Stamp a forwarded event's context. Omitted keys still count as violations (metrics,
    headers, dry runs), but the forwarded event no longer has them, so its violationErrors
    leave them out and ``omittedProperties`` lists them instead."""
    context = event.get("context")
    if not isinstance(context, dict):
        context = event["context"] = {}
    context["trackingPlanId"] = plan.id
    context["trackingPlanVersion"] = plan.version
    remaining = violations
    if policy.unplanned_properties == "omit":
        omitted = [v for v in violations if v["type"] == ADDITIONAL_PROPERTIES]
        if omitted:
            context["omittedProperties"] = [_omit(event, v) for v in omitted]
            remaining = [v for v in violations if v["type"] != ADDITIONAL_PROPERTIES]
    if policy.propagate_validation_errors:
        context["violationErrors"] = remaining


def _omit(event: dict[str, Any], violation: Violation) -> str:
    """Remove one unplanned key; returns its dotted path (e.g. ``properties.coupon``)."""
    segments = [
        s.replace("~1", "/").replace("~0", "~")
        for s in violation["meta"]["instancePath"].split("/")[1:]
    ]
    node: Any = event
    for segment in segments:
        node = node[int(segment)] if isinstance(node, list) else node.get(segment)
    if isinstance(node, dict):
        node.pop(violation["property"], None)
    return ".".join([*segments, violation["property"]])
