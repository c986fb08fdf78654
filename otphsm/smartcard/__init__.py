"""The PC/SC adapter (pyscard) and the CNS card protocol, station side."""
