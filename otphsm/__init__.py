"""otphsm: one-time passwords whose secrets never leave a PKCS#11 HSM."""

__version__ = "0.1.0"
