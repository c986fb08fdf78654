"""`otphsm health`: the standard gRPC health check over mTLS, for container health checks and
Kubernetes exec probes (Kubernetes' own gRPC probe cannot present a client certificate).

    otphsm health --config health.toml [--service otphsm.v1.ValidationService] [--live]

Exit 0 when the service answers SERVING, 1 when it answers anything else, 5 when it cannot be
reached (the table in `otphsm.cli.ui`). With `--live` (a liveness probe) any answer exits 0:
a server that reports its HSM or database down is running and must not be restarted for it.
The health service is open to every client the server's CA admitted, whatever its role: any
client certificate will do; `--pki DIR` reads the verifier's.
"""

from __future__ import annotations

import argparse

from otphsm.cli.commands import CommandTree
from otphsm.cli.connection import add_connection_arguments, connect
from otphsm.cli.ui import ExitCode


def register(tree: CommandTree) -> None:
    parser = tree.command(
        "health",
        handler=_health,
        help="ask the service's gRPC health service (exit 0: SERVING, 1: not, 5: unreachable)",
    )
    parser.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help="one service's status, e.g. otphsm.v1.ValidationService (default: the server's)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="exit 0 on any answer, NOT_SERVING too (liveness: the process runs and answers)",
    )
    add_connection_arguments(parser, "verifier")


def _health(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2

    with connect(args) as client:
        check = client.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        request = health_pb2.HealthCheckRequest(service=args.service)
        answer: health_pb2.HealthCheckResponse = client.call(check, request)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.service or 'server'}: {status}")
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    return ExitCode.OK if serving or args.live else ExitCode.NOT_ACCEPTED
