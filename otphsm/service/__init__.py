"""gRPC servicers, interceptors, configuration and server assembly."""
