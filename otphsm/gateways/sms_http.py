"""An SMS gateway reached over HTTP(S): one JSON POST per message, with a timeout per attempt
and a bounded number of retries (exponential backoff).

    POST <url>   Content-Type: application/json   [Authorization: Bearer <token>]
    {"to": "+393331234567", "text": "..."}

- 2xx: accepted.
- 5xx, 429, a timeout or a connection failure: tried again, `retries` more times at most,
  then `SmsGatewayUnavailable` (a DeviceUnavailable: the caller may try later). A timed-out
  attempt may still have been delivered, so a retry can repeat the message: the same text,
  the same code, never a second code.
- any other status (4xx: a bad number, bad credentials; a 3xx redirect is not followed):
  `SmsRefused` (a DeviceRefused) at once, with no retry: trying again cannot help.

Messages carry codes, so nothing here logs or repeats a message, a response body, the
token, or the URL's query and credentials: errors name the gateway as scheme://host/path.
Only the standard library is used (urllib): one POST per message needs no client library.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from otphsm.core.errors import ConfigurationError, DeviceRefused, DeviceUnavailable

MAX_RETRIES = 10


class SmsGatewayUnavailable(DeviceUnavailable):
    pass


class SmsRefused(DeviceRefused):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx surfaces as an HTTPError, treated as a refusal


class HttpSmsGateway:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        bearer_token: str = "",
        proxies: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`proxies`: None follows the environment (http_proxy, no_proxy, …); {} goes direct."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("the SMS gateway URL must be http(s)://host[:port]/path")
        if timeout_seconds <= 0 or not 0 <= retries <= MAX_RETRIES or backoff_seconds < 0:
            raise ConfigurationError(
                f"SMS gateway: timeout must be > 0, retries 0..{MAX_RETRIES}, backoff >= 0"
            )
        self._url = url
        self.where = f"{parts.scheme}://{parts.hostname}{_port(parts)}{parts.path}"
        self._timeout = timeout_seconds
        self._retries = retries
        self._backoff = backoff_seconds
        self._token = bearer_token
        self._sleep = sleep
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if proxies is not None:
            handlers.append(urllib.request.ProxyHandler(dict(proxies)))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"HttpSmsGateway({self.where})"

    def send(self, phone_number: str, text: str) -> None:
        body = json.dumps({"to": phone_number, "text": text}).encode()
        last = ""
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(self._backoff * 2 ** (attempt - 1))
            status, last = self._attempt(body)
            if status is not None and 200 <= status < 300:
                return
            if status is not None and _permanent(status):
                raise SmsRefused(
                    f"the SMS gateway {self.where} refused the message (HTTP {status}); "
                    "not retried: check the number and the gateway's configuration"
                )
        raise SmsGatewayUnavailable(
            f"the SMS gateway {self.where} failed {self._retries + 1} attempt(s), the last "
            f"with {last}; try again later"
        )

    def _attempt(self, body: bytes) -> tuple[int | None, str]:
        """(HTTP status, description); the status is None when no answer came."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(  # noqa: S310 (__init__ allows only http and https)
            self._url, data=body, headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read(4096)
                status = int(response.status)
        except urllib.error.HTTPError as error:
            error.close()
            return error.code, f"HTTP {error.code}"
        except TimeoutError:
            return None, f"no answer within {self._timeout:g} s"
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                return None, f"no answer within {self._timeout:g} s"
            return None, f"a connection failure ({type(error.reason).__name__})"
        except OSError as error:
            return None, f"a connection failure ({type(error).__name__})"
        return status, f"HTTP {status}"


def _permanent(status: int) -> bool:
    return not (status == 429 or status >= 500)


def _port(parts: urllib.parse.SplitResult) -> str:
    return f":{parts.port}" if parts.port else ""
