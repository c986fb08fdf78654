"""Use cases: the flows of docs/architecture.md over the ports. Pure of transport and devices;
the gRPC servicers and the CLI call these and only translate."""
