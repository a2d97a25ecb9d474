"""The node's JSON codecs, built once: what the stores write and read, and what goes out on
the wire. msgspec encoders and decoders are reusable and cheapest when shared."""

from __future__ import annotations

from typing import Any

import msgspec

from .jobs import Job
from .models import JobRequest

__all__ = ("decode", "decode_job", "decode_request", "encode")

encode = msgspec.json.Encoder().encode
"""Any value the node sends or stores, as JSON bytes."""

decode: Any = msgspec.json.Decoder().decode
"""JSON bytes as plain Python values."""

decode_job = msgspec.json.Decoder(Job).decode
"""A stored job record."""

decode_request = msgspec.json.Decoder(JobRequest).decode
"""A stored job request (kept for a rerun)."""
