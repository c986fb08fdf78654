"""Seeds inside the HSM: generate, import, derive by ECDH, and compute HMACs with them.

Implements the `otphsm.core.ports.OtpHsm` port. Seeds leave the HSM only wrapped under the
trusted KEK (or never, in resident mode); HMACs are computed with C_Sign.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import EcdhSeed, SeedRef, SeedStorage
from otphsm.hsm import ecdh, templates
from otphsm.hsm.cache import HandleCache
from otphsm.hsm.confinement import check_unwrap_is_confined
from otphsm.hsm.errors import (
    RECOVERABLE,
    HsmCapacityExceeded,
    HsmKeyMissing,
    HsmOperationRefused,
    ckr_of,
)
from otphsm.hsm.keks import kek_labels
from otphsm.hsm.mechanisms import HMAC_MECHANISMS, wrap_mechanism
from otphsm.hsm.peppers import Peppers
from otphsm.hsm.session import HsmSessionOwner, SessionContext

GENERATED_SEED_LENGTHS = (20, 32, 64)
MIN_IMPORTED_SEED = 10
MAX_IMPORTED_SEED = 128
_STALE_HANDLE = (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid)

_UNWRAPPED_TEMPLATE = templates.without_class_and_type(templates.SEED_UNWRAPPED)
"""Built once: an unwrap (a cache miss) is on the verification path."""
CacheKey = tuple[SeedStorage, bytes]
Key = Any
"""A python-pkcs11 key object. Its methods (sign, wrap_key, unwrap_key, derive_key) are mixed in
at run time from the key's capabilities, which its static types cannot express."""


class HsmSeedVault:
    def __init__(self, owner: HsmSessionOwner) -> None:
        self._owner = owner
        self._config = owner.config
        self._wrap_mechanism, self._wrap_param = wrap_mechanism(owner.config.wrap_mechanism)
        self._seeds: HandleCache[CacheKey, Key] = HandleCache(owner.config.handle_cache_size)
        self._named_keys: HandleCache[str, Key] = HandleCache(8)
        self._peppers = Peppers(owner.config.pepper_label)

    @property
    def owner(self) -> HsmSessionOwner:
        return self._owner

    def close(self) -> None:
        self._owner.close()

    @property
    def cache(self) -> HandleCache[CacheKey, Key]:
        return self._seeds

    @property
    def wrap_mechanism(self) -> tuple[Mechanism, bytes | None]:
        return self._wrap_mechanism, self._wrap_param

    def kek(self, ctx: SessionContext, label: str) -> Key:
        """The KEK labelled `label` (a handle cached for this session)."""
        return self._named_key(ctx, label, KeyType.AES)

    def forget_key(self, label: str) -> None:
        """Drop a cached handle (its key was destroyed)."""
        self._named_keys.pop(label)

    # --- the OtpHsm port -------------------------------------------------------------------

    def generate_seed(self, algorithm: HashAlgorithm, length: int | None = None) -> SeedRef:
        length = algorithm.digest_size if length is None else length
        if length not in GENERATED_SEED_LENGTHS or length < algorithm.digest_size:
            raise InvalidInput(
                f"a generated {algorithm} seed is {algorithm.digest_size} bytes or longer, "
                f"one of {GENERATED_SEED_LENGTHS}; got {length}"
            )

        def op(ctx: SessionContext) -> SeedRef:
            if self._config.seed_storage is SeedStorage.RESIDENT:
                object_id = ctx.session.generate_random(128)
                ctx.session.generate_key(
                    KeyType.GENERIC_SECRET,
                    length * 8,
                    id=object_id,
                    store=True,
                    template=templates.without_class_and_type(templates.SEED_RESIDENT),
                )
                return SeedRef(SeedStorage.RESIDENT, object_id)
            key = ctx.session.generate_key(
                KeyType.GENERIC_SECRET,
                length * 8,
                template=templates.without_class_and_type(templates.SEED_TO_WRAP),
            )
            return self._wrap_and_destroy(ctx, key)

        return self._owner.run("generating a seed", op)

    def import_seed(self, secret: bytearray | bytes, algorithm: HashAlgorithm) -> SeedRef:
        if not MIN_IMPORTED_SEED <= len(secret) <= MAX_IMPORTED_SEED:
            raise InvalidInput(
                f"a seed must be {MIN_IMPORTED_SEED}..{MAX_IMPORTED_SEED} bytes, got {len(secret)}"
            )
        value = _hmac_key(secret, algorithm)

        def op(ctx: SessionContext) -> SeedRef:
            if self._config.seed_storage is SeedStorage.RESIDENT:
                object_id = ctx.session.generate_random(128)
                ctx.session.create_object(
                    templates.extended(
                        templates.SEED_RESIDENT,
                        {Attribute.ID: object_id, Attribute.VALUE: bytes(value)},
                    )
                )
                return SeedRef(SeedStorage.RESIDENT, object_id)
            key = ctx.session.create_object(
                templates.extended(templates.SEED_TO_WRAP, {Attribute.VALUE: bytes(value)})
            )
            return self._wrap_and_destroy(ctx, key)

        try:
            return self._owner.run("importing a seed", op)
        finally:
            _wipe(value)
            if isinstance(secret, bytearray):
                _wipe(secret)

    def derive_seed_ecdh(self, device_public_point: bytes, algorithm: HashAlgorithm) -> EcdhSeed:
        ecdh.check_p256_point(device_public_point)
        if algorithm.digest_size > ecdh.SECRET_LENGTH:
            raise InvalidInput(
                f"secure (ECDH) activation yields a {ecdh.SECRET_LENGTH}-byte seed, enough for "
                f"SHA1 and SHA256 but not {algorithm}; use a generated seed for {algorithm}"
            )
        resident = self._config.seed_storage is SeedStorage.RESIDENT
        seed_template = templates.SEED_RESIDENT if resident else templates.SEED_TO_WRAP

        def op(ctx: SessionContext) -> EcdhSeed:
            object_id = ctx.session.generate_random(128) if resident else None
            derived, server_point = ecdh.derive(
                ctx.session, device_public_point, seed_template, object_id
            )
            if object_id is not None:
                return EcdhSeed(SeedRef(SeedStorage.RESIDENT, object_id), server_point)
            return EcdhSeed(self._wrap_and_destroy(ctx, derived), server_point)

        return self._owner.run("deriving a seed by ECDH", op)

    def hmac(self, seed: SeedRef, algorithm: HashAlgorithm, message: bytes) -> bytes:
        mechanism = HMAC_MECHANISMS[algorithm]

        def op(ctx: SessionContext) -> bytes:
            try:
                return self._sign_with_seed(ctx, seed, mechanism, message)
            except _STALE_HANDLE:
                self._seeds.pop((seed.storage, seed.data))
                return self._sign_with_seed(ctx, seed, mechanism, message)

        return self._owner.run("computing an HMAC", op)

    def destroy_seed(self, seed: SeedRef) -> None:
        def op(ctx: SessionContext) -> None:
            cached = self._seeds.get((seed.storage, seed.data), ctx.generation)
            self._seeds.pop((seed.storage, seed.data))
            if seed.storage is SeedStorage.RESIDENT:
                for obj in ctx.session.get_objects(
                    {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.ID: seed.data}
                ):
                    obj.destroy()
            elif cached is not None:
                cached.destroy()

        self._owner.run("destroying a seed", op)

    def resident_seed_ids(self) -> set[bytes]:
        def op(ctx: SessionContext) -> set[bytes]:
            found = ctx.session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.TOKEN: True,
                    Attribute.LABEL: templates.SEED_RESIDENT[Attribute.LABEL],
                }
            )
            return {bytes(obj[Attribute.ID]) for obj in found}

        return self._owner.run("listing resident seeds", op)

    def random_bytes(self, length: int) -> bytes:
        if length <= 0:
            raise InvalidInput("random length must be positive")
        return bytes(
            self._owner.run(
                "drawing random bytes", lambda ctx: ctx.session.generate_random(length * 8)
            )
        )

    def keyed_digest(self, data: bytes) -> bytes:
        """`data`'s MAC under the newest pepper key (`peppers`)."""
        return self._owner.run(
            "computing a keyed digest",
            lambda ctx: self._peppers.digest(ctx.session, self._pepper_lookup(ctx), data),
        )

    def keyed_digests(self, data: bytes) -> list[bytes]:
        """`data`'s MAC under every pepper generation, newest first (to find a stored MAC)."""
        return self._owner.run(
            "computing keyed digests",
            lambda ctx: self._peppers.digests(ctx.session, self._pepper_lookup(ctx), data),
        )

    def keyed_digest_matches(self, data: bytes, mac: bytes) -> bool:
        """Whether `mac` is `data`'s MAC under the pepper generation it names."""
        try:
            return self._owner.run(
                "checking a keyed digest",
                lambda ctx: self._peppers.matches(self._pepper_lookup(ctx), data, mac),
            )
        except HsmKeyMissing:
            return False  # made with a pepper no longer on the token

    def forget_newest_pepper(self) -> None:
        """Look for the newest pepper at the next MAC (after this process made one)."""
        self._peppers.forget_newest()

    def _pepper_lookup(self, ctx: SessionContext) -> Callable[[str], Key]:
        return lambda label: self._named_key(ctx, label, KeyType.GENERIC_SECRET)

    # --- internals -------------------------------------------------------------------------

    def check_keys(self) -> None:
        """Fail with an actionable error now if the KEK or the pepper key is missing."""

        def op(ctx: SessionContext) -> None:
            kek = self._named_key(ctx, self._current_kek_label(ctx), KeyType.AES)
            self._named_key(ctx, self._config.pepper_label, KeyType.GENERIC_SECRET)
            self._check_unwrap_is_confined(ctx, kek)

        self._owner.run("checking the provisioned keys", op)

    def _check_unwrap_is_confined(self, ctx: SessionContext, kek: Key) -> None:
        """The KEK must unwrap a seed into nothing but a sensitive, locked session object, or
        whoever holds the user PIN could read every stored seed (`confinement`)."""
        check_unwrap_is_confined(
            ctx.session,
            kek,
            lambda key: self._wrap_and_destroy(ctx, key).data,
            (self._wrap_mechanism, self._wrap_param),
            f"{self._current_kek_label(ctx)!r} on token {self._config.token_label!r}",
        )

    def _wrap_and_destroy(self, ctx: SessionContext, key: Key) -> SeedRef:
        try:
            label = self._current_kek_label(ctx)
            kek = self._named_key(ctx, label, KeyType.AES)
            blob = kek.wrap_key(
                key, mechanism=self._wrap_mechanism, mechanism_param=self._wrap_param
            )
        finally:
            key.destroy()
        return SeedRef(SeedStorage.WRAPPED, bytes(blob), label)

    def _current_kek_label(self, ctx: SessionContext) -> str:
        """The newest KEK generation on the token (`keks`); looked up at every wrap, so a
        rotation's new KEK wraps new seeds at once, in every replica."""
        labels = kek_labels(ctx.session, self._config.kek_label)
        return labels[-1] if labels else self._config.kek_label

    def _sign_with_seed(
        self, ctx: SessionContext, seed: SeedRef, mechanism: Mechanism, message: bytes
    ) -> bytes:
        cache_key = (seed.storage, seed.data)
        key = self._seeds.get(cache_key, ctx.generation)
        if key is not None:
            return bytes(key.sign(message, mechanism=mechanism))
        key = self._load_seed(ctx, seed)
        if not self._seeds.capacity:
            try:
                return bytes(key.sign(message, mechanism=mechanism))
            finally:
                if seed.storage is SeedStorage.WRAPPED:
                    _destroy_quietly(key)
        for evicted in self._seeds.put(cache_key, ctx.generation, key):
            if seed.storage is SeedStorage.WRAPPED:
                _destroy_quietly(evicted)
        return bytes(key.sign(message, mechanism=mechanism))

    def _load_seed(self, ctx: SessionContext, seed: SeedRef) -> Key:
        if seed.storage is SeedStorage.RESIDENT:
            try:
                key: Key = ctx.session.get_key(object_class=ObjectClass.SECRET_KEY, id=seed.data)
            except p11e.NoSuchKey:
                raise HsmKeyMissing(
                    f"resident seed {seed.fingerprint} is not on the token"
                ) from None
            return key
        kek = self._named_key(ctx, seed.kek or self._config.kek_label, KeyType.AES)
        for attempt in range(2):
            try:
                return _unwrapped_seed(
                    kek.unwrap_key(
                        ObjectClass.SECRET_KEY,
                        KeyType.GENERIC_SECRET,
                        seed.data,
                        mechanism=self._wrap_mechanism,
                        mechanism_param=self._wrap_param,
                        template=_UNWRAPPED_TEMPLATE,
                    )
                )
            except p11e.DeviceMemory as exc:
                # Out of session-object space: give back half of the cached seeds, once.
                if attempt or not len(self._seeds):
                    raise HsmCapacityExceeded(
                        "the HSM has no room for another unwrapped seed; lower hsm.cache_size",
                        ckr=0x31,
                        ckr_name="CKR_DEVICE_MEMORY",
                    ) from exc
                for evicted in self._seeds.shrink(len(self._seeds) // 2):
                    _destroy_quietly(evicted)
            except RECOVERABLE:
                raise
            except p11e.PKCS11Error as exc:
                code, name = ckr_of(exc)
                raise HsmOperationRefused(
                    f"the HSM could not unwrap seed {seed.fingerprint}: the stored blob is "
                    "damaged or was wrapped under another HSM's KEK",
                    ckr=code,
                    ckr_name=name,
                ) from exc
        raise AssertionError("unreachable")

    def _named_key(self, ctx: SessionContext, label: str, key_type: KeyType) -> Key:
        key = self._named_keys.get(label, ctx.generation)
        if key is None:
            try:
                key = ctx.session.get_key(
                    object_class=ObjectClass.SECRET_KEY, key_type=key_type, label=label
                )
            except p11e.NoSuchKey:
                raise HsmKeyMissing(
                    f"key {label!r} not found on token {self._config.token_label!r}: provision "
                    "the token with `otphsm admin hsm-init` (or `otphsm sim hsm init` for SoftHSM2)"
                ) from None
            except p11e.MultipleObjectsReturned:
                raise HsmKeyMissing(
                    f"several keys labelled {label!r} on token {self._config.token_label!r}: "
                    "keep exactly one"
                ) from None
            self._named_keys.put(label, ctx.generation, key)
        return key


_KEY_CLASSES: dict[tuple[type, ...], type] = {}


def _unwrapped_seed(key: Key) -> Key:
    """A seed just unwrapped (a cache miss), as `_young_class_garbage` keeps it, its key type
    known: python-pkcs11 would ask the HSM for it at the first sign (a `cached_property` of the
    key, stored in the instance's dict), one more round trip on every miss."""
    key.__dict__["key_type"] = KeyType.GENERIC_SECRET
    return _young_class_garbage(key)


def _young_class_garbage(key: Key) -> Key:
    """`key` with the one class kept for its capabilities, its own left to die now.

    python-pkcs11 makes a new class for every object it returns (`make_object`: the key's
    capabilities as mixins). A cached seed lives on for thousands of other unwraps, so its
    class would die old, in the cyclic garbage collector's oldest generation, where thousands
    of dead classes pile up until one full collection frees them all at once, holding the GIL:
    a pause of 100-400 ms every ~15,000 cache misses (README, Benchmarks). With the first
    class made for the same bases in its place, the new one is garbage at once, freed by the
    next young collection, in small steps."""
    made = type(key)
    kept = _KEY_CLASSES.setdefault(made.__bases__, made)
    if kept is not made:
        key.__class__ = kept
    return key


def _destroy_quietly(key: Any) -> None:
    with contextlib.suppress(p11e.PKCS11Error):
        key.destroy()


def _hmac_key(secret: bytes | bytearray, algorithm: HashAlgorithm) -> bytearray:
    """The key the HSM keeps for `secret`, giving the same MACs (RFC 2104 §2). A key longer
    than the block is replaced by its hash, as HMAC does: unwrapping with RFC 5649 may leave
    the wrap's zero padding on it, which would change the MAC of a key that is not hashed.
    A shorter key is zero-padded up to the digest size (SoftHSM refuses shorter HMAC keys;
    HMAC zero-pads to the block anyway)."""
    if len(secret) > algorithm.block_size:
        return bytearray(hashlib.new(algorithm.hashlib_name, secret).digest())
    return bytearray(secret).ljust(algorithm.digest_size, b"\0")


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))
