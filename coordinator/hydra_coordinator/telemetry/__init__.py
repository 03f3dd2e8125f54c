"""What happened to each request: metrics, the access log line and telemetry sinks."""

from .record import EventSink, Recorder, RequestRecord

__all__ = ["EventSink", "Recorder", "RequestRecord"]
