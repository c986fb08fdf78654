"""The PKCS#11 adapter (python-pkcs11): one owner of login and sessions, seeds, HMAC, ECDH."""
