"""Enforcing a source's tracking plan on one event.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.enforce.compile import CompiledRule
from gateway.enforce.policy import Policy
from gateway.enforce.violations import (
    ADDITIONAL_PROPERTIES,
    Violation,
    invalid_event_violation,
    node_at,
    pointer_tokens,
    unknown_version_violation,
    unplanned_event_violation,
)
from gateway.outcomes import QuarantineReason
from gateway.plans.snapshot import PlanEvent, Snapshot, Source, TrackingPlan
from gateway.publish.records import MAX_VIOLATIONS, bounded_texts, bounded_violations

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
    # The version of the event's rule it was checked against ("" when none was).
    rule_version: str
    # What stamping did to a forwarded event, so that its JSON written before enforcement can
    # be reused: the keys added at the end of ``context`` (a dict, or a new ``context`` key)
    # when that is all that changed; None when the event changed otherwise (omitted keys, a
    # replaced or already-stamped context) and must be written anew.
    appended: dict[str, Any] | None = None


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
        current = list(snapshot.tracking_plans.values())
        for plan in (*current, *(past for p in current for past in p.past.values())):
            common = (plan.common,) if plan.common is not None else ()
            for planned in (*(v for e in plan.events for v in e.all_versions()), *common):
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
        # A copy of the items first: the warm-up thread, or a large request processed in a
        # worker thread, may add a compiled rule meanwhile.
        self._rules = {fp: rule for fp, rule in list(self._rules.items()) if fp in live}
        self._warming = snapshot

    def enforce(
        self,
        event: dict[str, Any],
        source: Source,
        snapshot: Snapshot,
        budget: ViolationBudget | None = None,
    ) -> Decision | None:
        """Validate and apply the policy; None when the source has no plan (pass through).

        With a ``budget`` (one per request), an invalid event whose violations the budget can no
        longer pay for is quarantined as ``invalid-event`` without them being collected.
        """
        enforcement = self.for_source(source, snapshot)
        return None if enforcement is None else enforcement.enforce(event, budget)

    def for_source(self, source: Source, snapshot: Snapshot) -> Enforcement | None:
        """What enforcing the source's plan needs, looked up once for a request's events; None
        when the source has no plan."""
        plan = snapshot.plan_for(source)
        if plan is None or source.tracking_plan is None:
            return None
        return Enforcement(self, plan, source.tracking_plan.policies)

    def shadow_for(self, source: Source, snapshot: Snapshot) -> Enforcement | None:
        """The source's shadow plan with its connection's policies, or None."""
        plan = snapshot.shadow_for(source)
        if plan is None or source.tracking_plan is None:
            return None
        return Enforcement(self, plan, source.tracking_plan.policies)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What enforcing a plan would do to an event, without doing it (shadow plans)."""

    violations: list[Violation]
    would: str  # forward, strip (forward without unplanned properties: omit) or drop
    event_label: str


class Enforcement:
    """One source's plan and policies, bound once per request: :meth:`Enforcer.enforce` without
    the per-event lookups."""

    __slots__ = ("_clean", "_enforcer", "_pinned", "_policies", "_rules", "plan")

    def __init__(self, enforcer: Enforcer, plan: TrackingPlan, policies: Mapping[str, Policy]):
        self._enforcer = enforcer
        self._rules = enforcer._rules
        self._policies = policies
        self.plan = plan
        self._pinned: dict[int, Enforcement] = {}  # past versions events were pinned to
        # The stamps of an event without violations, the same for all of them: one object per
        # request (by propagateValidationErrors), so the pipeline writes its JSON once. Events
        # share it, and its empty list, in their contexts: nothing changes a stamped context.
        ids = {"trackingPlanId": plan.id, "trackingPlanVersion": plan.version}
        self._clean = (ids, {**ids, "violationErrors": []})

    def enforce(self, event: dict[str, Any], budget: ViolationBudget | None) -> Decision:
        """See :meth:`Enforcer.enforce`."""
        plan = self.plan
        if plan.past:
            pinned = self._pinned_to(event)
            if pinned is not None:
                return pinned.enforce(event, budget)
        event_type: str = event["type"]
        policy = self._policies[event_type]
        violations, label, version = self._validate(event, event_type, policy, budget)
        if violations is None:
            assert budget is not None
            unlisted = [invalid_event_violation(budget.exhausted_message())]
            return Decision(plan, unlisted, QuarantineReason.INVALID_EVENT, label, version)
        if not violations:
            stamps = self._clean[policy.propagate_validation_errors]
            return Decision(plan, violations, None, label, version, _append(event, stamps))
        reason = policy.drop_reason(violations)
        decision = Decision(plan, violations, reason, label, version)
        if reason is None:
            decision.appended = _stamp(event, plan, violations, policy)
        return decision

    def judge(self, event: dict[str, Any], budget: ViolationBudget) -> Judgement:
        """What :meth:`enforce` would decide, the event left as it is (no stamps, nothing
        omitted). An event that violates its rule once ``budget`` is spent is a drop with no
        violations listed, as enforcing quarantines it (``invalid-event``)."""
        event_type: str = event["type"]
        policy = self._policies[event_type]
        violations, label, _ = self._validate(event, event_type, policy, budget)
        if violations is None:
            return Judgement([], "drop", label)
        if not violations:
            return Judgement(violations, "forward", label)
        if policy.drop_reason(violations) is not None:
            return Judgement(violations, "drop", label)
        stripped = policy.unplanned_properties == "omit" and any(
            v["type"] == ADDITIONAL_PROPERTIES for v in violations
        )
        return Judgement(violations, "strip" if stripped else "forward", label)

    def _pinned_to(self, event: dict[str, Any]) -> Enforcement | None:
        """The past version of the plan the event names (RudderTyper's
        ``context.ruddertyper.trackingPlanId`` and ``trackingPlanVersion``), if the plan still
        has it; None: the current version applies."""
        context = event.get("context")
        typer = context.get("ruddertyper") if context.__class__ is dict else None
        if typer.__class__ is not dict or typer.get("trackingPlanId") != self.plan.id:
            return None
        version = typer.get("trackingPlanVersion")
        past = self.plan.past.get(version) if version.__class__ is int else None
        if past is None:
            return None
        bound = self._pinned.get(past.version)
        if bound is None:
            bound = self._pinned[past.version] = Enforcement(self._enforcer, past, self._policies)
        return bound

    def _validate(
        self,
        event: dict[str, Any],
        event_type: str,
        policy: Policy,
        budget: ViolationBudget | None,
    ) -> tuple[list[Violation] | None, str, str]:
        """The violations (None: invalid, but over the request's budget), the metrics label
        and the version of the rule checked ("" if none): the event's own rule, at the version
        it names or the connection's default, then the plan's common rule."""
        if event_type == "alias":
            return [], event_type, ""
        name = event.get("event", "") if event_type == "track" else ""
        planned = self.plan.by_key.get((event_type, name))
        version = ""
        found: list[Violation] | None
        if planned is None:
            if event_type == "track":
                found, label = [unplanned_event_violation(name)], UNPLANNED_LABEL
            else:
                found, label = [], event_type
        else:
            label = name if event_type == "track" else event_type
            chosen, found = _chosen_version(planned, event, policy)
            if chosen is not None:
                version = str(chosen.version)
                found = self._check(chosen, event, budget)
        common = self.plan.common
        if common is None or found is None:
            return found, label, version
        extra = self._check(common, event, budget)
        if extra is None:
            return None, label, version
        return (found + extra if extra else found), label, version

    def _check(
        self, planned: PlanEvent, event: dict[str, Any], budget: ViolationBudget | None
    ) -> list[Violation] | None:
        """One rule's violations of the event (None: some, over the request's budget)."""
        rule = self._rules.get(planned.fingerprint) or self._enforcer.rule(planned)
        if budget is None:
            return rule.check(event)
        violations = rule.check(event, budget.left > 0)
        if violations:
            budget.left -= len(violations)
        return violations


def _chosen_version(
    planned: PlanEvent, event: dict[str, Any], policy: Policy
) -> tuple[PlanEvent | None, list[Violation]]:
    """The version of the rule to check the event against, or None and why not.

    An event names one in ``context.protocols.event_version`` (an integer, or its digits);
    else the connection's default applies: the oldest, or the latest."""
    context = event.get("context")
    protocols = context.get("protocols") if isinstance(context, dict) else None
    if not isinstance(protocols, dict) or "event_version" not in protocols:
        if policy.latest_rule_version and planned.latest is not None:
            return planned.latest, []
        return planned, []
    pinned = protocols["event_version"]
    number = pinned
    if isinstance(pinned, str) and pinned.isascii() and pinned.isdigit() and len(pinned) < 10:
        number = int(pinned)
    chosen = planned.at_version(number) if type(number) is int else None
    if chosen is None:
        versions = [v.version for v in planned.all_versions()]
        return None, [
            unknown_version_violation(planned.name or planned.event_type, pinned, versions)
        ]
    return chosen, []


class ViolationBudget:
    """How many more violations one request may have collected and listed.

    Collecting a violation costs microseconds, and a 32 KB event can have thousands (an array
    of 15,000 wrong items): without a bound, one request of such events would hold the event
    loop for a minute. The verdict stays exact for every event; only the listing stops.
    """

    __slots__ = ("advice", "left", "limit", "scope")

    def __init__(
        self,
        limit: int,
        scope: str = "this request's events",
        advice: str = "send fewer invalid events per request",
    ) -> None:
        self.limit = limit
        self.left = limit
        self.scope = scope
        self.advice = advice

    def exhausted_message(self) -> str:
        return (
            f"event violates its rule, but its violations were not collected: {self.scope} "
            f"already had more than {self.limit} (ingest.max_request_violations); {self.advice}"
        )


# Every key stamping may add to a forwarded event's context (the lists' ``…Total`` when cut).
STAMPS = (
    "trackingPlanId",
    "trackingPlanVersion",
    "violationErrors",
    "violationErrorsTotal",
    "omittedProperties",
    "omittedPropertiesTotal",
)


def _stamp(
    event: dict[str, Any], plan: TrackingPlan, violations: list[Violation], policy: Policy
) -> dict[str, Any] | None:
    """Stamp a forwarded event's context; returns the stamps if they were only appended.

    Omitted keys still count as violations (metrics, headers, dry runs), but the forwarded
    event no longer has them, so its violationErrors leave them out and ``omittedProperties``
    lists them instead. Both lists are bounded (see gateway.publish.records): an event within
    the size limit when received stays whole whatever its violations, and ``…Total`` gives the
    full count when a list was cut.
    """
    stamps: dict[str, Any] = {"trackingPlanId": plan.id, "trackingPlanVersion": plan.version}
    remaining = violations
    omitted = None
    if policy.unplanned_properties == "omit":
        omitted = [v for v in violations if v["type"] == ADDITIONAL_PROPERTIES]
        if omitted:
            paths = [_omit(event, v) for v in omitted]
            _bounded_list(stamps, "omittedProperties", bounded_texts, paths)
            remaining = [v for v in violations if v["type"] != ADDITIONAL_PROPERTIES]
    if policy.propagate_validation_errors:
        if remaining:
            _bounded_list(stamps, "violationErrors", bounded_violations, remaining)
        else:
            stamps["violationErrors"] = remaining  # the common case, kept cheap
    appended = _append(event, stamps)
    return None if omitted else appended


def _append(event: dict[str, Any], stamps: dict[str, Any]) -> dict[str, Any] | None:
    """Put the stamps in the event's context; returns them if they were only appended."""
    context = event.get("context")
    if isinstance(context, dict):
        size = len(context)
        context.update(stamps)
        # A key the context already had keeps its place: then it grew by fewer keys.
        return stamps if len(context) == size + len(stamps) else None
    appended = "context" not in event  # else a non-object context is replaced
    event["context"] = stamps.copy()
    return stamps if appended else None


def _bounded_list(
    stamps: dict[str, Any], name: str, bound: Callable[[Sequence[Any]], list[Any]], items: list[Any]
) -> None:
    stamps[name] = bound(items)
    if len(items) > MAX_VIOLATIONS:
        stamps[f"{name}Total"] = len(items)


def _omit(event: dict[str, Any], violation: Violation) -> str:
    """Remove one unplanned key; returns its dotted path (e.g. ``properties.coupon``).

    The key may already be gone: an earlier omission may have removed one of its parents.
    """
    segments = pointer_tokens(violation["meta"]["instancePath"])
    node = node_at(event, segments)
    if isinstance(node, dict):
        node.pop(violation["property"], None)
    return ".".join([*segments, violation["property"]])
