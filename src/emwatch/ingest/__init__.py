"""Ingest: MQTT messages in, validated fixes and events out, in micro-batches."""
