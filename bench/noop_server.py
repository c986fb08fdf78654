"""The do-nothing baseline: ValidationService.Verify answering OK at once, with the request and
response messages of the real service, built by the same `new_grpc_server` and `bind` from the
same `[server]` section (thread pool size, message limit, mTLS with client certificates).

    python bench/noop_server.py --config FILE [--interceptor]

It listens on the config's address and port (0: the kernel picks one) and logs the same
"serving" record with the bound port as `otphsm serve`, so the deployment harness starts it
and reads its port back the same way.

Bare, it has no interceptor: the ratio of the real service to it is the cost of everything
otphsm adds (authentication, the store, the HSM, logging, metrics) over bare gRPC serving.
With --interceptor it runs behind otphsm's own interceptor (certificate roles, the per-RPC log
line, metrics), so the two baselines split that cost: serving the call, then the store and HSM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

import grpc

from otphsm.service.auth import Authenticator
from otphsm.service.config import load_config
from otphsm.service.interceptor import ServiceInterceptor
from otphsm.service.logs import configure_logging
from otphsm.service.metrics import Metrics
from otphsm.service.server import bind, new_grpc_server
from otphsm.v1 import common_pb2, validation_pb2, validation_pb2_grpc


class NoopValidation(validation_pb2_grpc.ValidationServiceServicer):
    def Verify(
        self, request: validation_pb2.VerifyRequest, context: grpc.ServicerContext
    ) -> common_pb2.VerifyResponse:
        return common_pb2.VerifyResponse(result=common_pb2.VERIFY_RESULT_OK, serial=request.serial)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--interceptor", action="store_true", help="behind otphsm's interceptor")
    args = parser.parse_args()
    config = load_config(args.config, env={})
    section = config.server
    configure_logging(section.log_level, section.log_format)
    interceptors: list[grpc.ServerInterceptor] = []
    if args.interceptor:
        interceptors.append(ServiceInterceptor(Authenticator(insecure=section.insecure), Metrics()))
    server = new_grpc_server(section, interceptors, model=config.server_model())
    validation_pb2_grpc.add_ValidationServiceServicer_to_server(NoopValidation(), server)
    port = bind(server, section)
    server.start()
    fields = {
        "address": section.address,
        "port": port,
        "interceptor": args.interceptor,
        "model": config.server_model().value,
    }
    logging.getLogger("otphsm.bench.noop").info("serving", extra={"fields": fields})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
