"""A simulated CNS/CPS card: APDU processor, vpcd transport, test PKI, card factory."""
