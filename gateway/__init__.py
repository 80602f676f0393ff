"""Tracking-plan validation gateway.

SDKs post Segment/RudderStack-style calls to the ingest API; every event is normalized, checked
against the tracking plan connected to its source, and published to Kafka — forwarded events to
the events topic, dropped ones to the quarantine topic. A 200 response means every event of the
request was acknowledged by Kafka (``acks=all``).
"""

__version__ = "0.1.0"
