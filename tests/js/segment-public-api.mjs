// Segment's own Public API SDK, unmodified, managing a tracking plan on the gateway's admin port.
// Usage: node segment-public-api.mjs <admin URL> <token> <source id>
// Prints one JSON line with what the SDK got back; exits non-zero if a call fails.
import { configureApis, unwrap } from "@segment/public-api-sdk-typescript";

const [base, token, sourceId] = process.argv.slice(2);
const { trackingPlans } = configureApis(token);
trackingPlans.basePath = base;

const orderRule = (required) => ({
  type: "object",
  properties: { properties: { type: "object", required } },
});
const created = await unwrap(trackingPlans.createTrackingPlan({ name: "SDK Plan", type: "LIVE" }));
const id = created.trackingPlan.id;
await unwrap(trackingPlans.updateTrackingPlan(id, { name: "SDK Plan Renamed" }));
await unwrap(
  trackingPlans.updateRulesInTrackingPlan(id, {
    rules: [
      { key: "Order Completed", type: "TRACK", version: 1, jsonSchema: orderRule(["amount"]) },
      { key: "Order Completed", type: "TRACK", version: 2, jsonSchema: orderRule(["total"]) },
      { key: "", type: "IDENTIFY", version: 1, jsonSchema: {} },
    ],
  }),
);
const rules = await unwrap(trackingPlans.listRulesFromTrackingPlan(id, { count: 2 }));
const rest = await unwrap(
  trackingPlans.listRulesFromTrackingPlan(id, { count: 2, cursor: rules.pagination.next }),
);
await unwrap(
  trackingPlans.removeRulesFromTrackingPlan(id, [
    { key: "Order Completed", type: "TRACK", version: 1 },
    { key: "", type: "IDENTIFY", version: 1 },
  ]),
);
const left = await unwrap(trackingPlans.listRulesFromTrackingPlan(id, { count: 10 }));
await unwrap(trackingPlans.addSourceToTrackingPlan(id, { sourceId }));
const sources = await unwrap(trackingPlans.listSourcesFromTrackingPlan(id, { count: 10 }));
const plans = await unwrap(trackingPlans.listTrackingPlans({ count: 10 }, "LIVE"));
const plan = await unwrap(trackingPlans.getTrackingPlan(id));

const other = await unwrap(trackingPlans.createTrackingPlan({ name: "Gone Plan", type: "LIVE" }));
await unwrap(trackingPlans.deleteTrackingPlan(other.trackingPlan.id));
let missing = null;
try {
  await unwrap(trackingPlans.getTrackingPlan(other.trackingPlan.id));
} catch (error) {
  missing = error; // unwrap() throws the first of the answer's errors
}
console.log(JSON.stringify({ id, rules, rest, left, sources, plans, plan, missing }));
