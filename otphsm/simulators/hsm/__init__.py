"""An isolated SoftHSM2 per run, and a fault-injecting PKCS#11 backend."""
