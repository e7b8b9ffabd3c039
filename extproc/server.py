"""The grpcio server that hosts the processor and the control services."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.auth.accounts import AccountManager
from extproc.control.auth import AuthService, device_secret
from extproc.control.models import ModelsService
from extproc.core.settings import Settings
from extproc.edge import access_log, ext_proc
from extproc.request.gateway import Gateway
from extproc.v1 import auth_pb2_grpc, models_pb2_grpc

_GRPC_SLACK = 8 * 1024 * 1024


async def start_server(settings: Settings, gateway: Gateway, accounts: AccountManager) -> grpc.aio.Server:
    limit = settings.max_request_bytes + _GRPC_SLACK
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ])
    ext_proc.add_to_server(server, gateway, settings.processor_token)
    access_log.add_to_server(server, gateway, settings.processor_token)
    models_pb2_grpc.add_ModelsServicer_to_server(ModelsService(gateway.runtime), server)  # type: ignore[no-untyped-call]
    auth_pb2_grpc.add_AuthServicer_to_server(  # type: ignore[no-untyped-call]
        AuthService(accounts, settings.admin_token, device_secret(settings)), server)
    health = grpc_health.HealthServicer()  # the standard gRPC health service: probes and load balancers
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for service in ("", "envoy.service.ext_proc.v3.ExternalProcessor", "extproc.v1.Models", "extproc.v1.Auth"):
        health.set(service, health_pb2.HealthCheckResponse.SERVING)
    address = str(settings.processor)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address} (processor.address / processor.port); is it in use?")
    await server.start()
    return server
