"""The pure domain: OTP maths, policy, identity checks and the ports adapters implement.

Nothing here imports grpc, pkcs11 or pyscard.
"""
