"""Errors a service raises; each transport renders them in its own protocol's error format."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    reason_code = 1  # 2030.5 Error reasonCode: invalid values

    def __init__(self, message: str, *, location: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location


class Invalid(ServiceError):
    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class UnsupportedMediaType(ServiceError):
    status = 415
    reason_code = 0  # invalid request format
