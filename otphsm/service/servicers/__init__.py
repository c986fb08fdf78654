"""One servicer per service of proto/otphsm/v1: each method translates proto ↔ domain and calls
one use case; errors are raised, and mapped to statuses by the interceptor."""

from __future__ import annotations

from otphsm.service.servicers.admin import AdminServicer
from otphsm.service.servicers.device import DeviceServicer
from otphsm.service.servicers.enrolment import EnrolmentServicer
from otphsm.service.servicers.validation import ValidationServicer

__all__ = ["AdminServicer", "DeviceServicer", "EnrolmentServicer", "ValidationServicer"]
