// The real Node SDKs, unmodified, sending every call type to the gateway, then flushing.
// Usage: node node-sdks.mjs <segment|rudderstack> <gateway URL> <write key> <user id>
// Exits non-zero if the SDK reports an error (a refused or failed request).
import { Analytics as SegmentAnalytics } from "@segment/analytics-node";
import RudderAnalytics from "@rudderstack/rudder-sdk-node";

const [sdk, gateway, writeKey, userId] = process.argv.slice(2);
const errors = [];
const calls = (client) => {
  client.identify({ userId, traits: { email: "zoe@example.com", plan: "pro" } });
  client.track({ userId, event: "Order Completed", properties: { orderId: "o-1", total: 12.5 } });
  client.page({ userId, name: "Install", properties: { path: "/install" } });
  client.screen({ userId, name: "Home", properties: { tab: "feed" } });
  client.group({ userId, groupId: "g-1", traits: { name: "Acme" } });
  client.alias({ userId, previousId: "anon-1" });
};

if (sdk === "segment") {
  const client = new SegmentAnalytics({ writeKey, host: gateway, flushInterval: 200, maxRetries: 0 });
  client.on("error", (error) => errors.push(String(error?.reason ?? error)));
  calls(client);
  await client.closeAndFlush({ timeout: 20000 });
} else {
  // gzip (its default): a gzipped, form-encoded body.
  const client = new RudderAnalytics(writeKey, {
    dataPlaneUrl: gateway,
    flushAt: 100,
    flushInterval: 200,
    retryCount: 0,
    logLevel: "error",
    errorHandler: (error) => errors.push(String(error)),
  });
  calls(client);
  await client.flush();
}

if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(1);
}
