"""Configuration files read into frozen dataclasses, one per TOML section: the generic loader
(`loader`) and the client's `[client]` section (`client`). No grpc, pkcs11 or pyscard here, so
a client-only install reads its file with the same code as `otphsm serve`."""
