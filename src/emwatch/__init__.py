"""emwatch: real-time electronic-monitoring ingestion and geofence alerting."""

__version__ = "0.1.0"
