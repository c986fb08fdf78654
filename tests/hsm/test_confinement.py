"""The start-up check reads back what the KEK unwraps instead of trusting a refusal alone."""

from __future__ import annotations

from typing import Any

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from support.hsm_fixtures import BARE_TOKEN, LEGACY_TOKEN

from otphsm.hsm import HsmSeedVault, open_vault, templates
from otphsm.hsm.confinement import check_unwrap_is_confined
from otphsm.hsm.errors import HsmKeyUnsafe
from otphsm.hsm.mechanisms import wrap_mechanism
from otphsm.hsm.session import HsmSessionOwner, SessionContext

pytestmark = pytest.mark.softhsm

PREVIOUS_RELEASE_UNWRAP_TEMPLATE = {
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.VERIFY: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.CLASS: ObjectClass.SECRET_KEY,
    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.SIGN: True,
    Attribute.TOKEN: False,
    Attribute.EXTRACTABLE: False,
}
"""The KEK's unwrap template as the previous release made it: no COPYABLE/MODIFIABLE."""


def test_a_kek_of_the_previous_release_is_refused_naming_the_copy(softhsm: Any) -> None:
    config = softhsm.token(LEGACY_TOKEN).hsm_config(
        kek_label="previous-release-kek", pepper_label="previous-release-pepper"
    )
    kek = {**templates.KEK, Attribute.UNWRAP_TEMPLATE: PREVIOUS_RELEASE_UNWRAP_TEMPLATE}
    with HsmSessionOwner(config) as owner:
        owner.run_as_security_officer(
            softhsm.so_pin,
            "making a KEK as the previous release did",
            lambda session: session.generate_key(
                KeyType.AES, 256, label=config.kek_label, store=True, template=kek
            ),
        )
        owner.run(
            "making the pepper key",
            lambda ctx: ctx.session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=config.pepper_label,
                store=True,
                template=templates.PEPPER,
            ),
        )
    with pytest.raises(HsmKeyUnsafe) as refused:
        open_vault(config)
    message = str(refused.value)
    assert "\n" not in message
    assert "'previous-release-kek'" in message and "a copyable key" in message


class _LyingKek:
    """A KEK on an HSM that refuses readable templates but makes every unwrapped secret
    readable anyway (opencryptoki 3.8's `secret_key_unwrap`), played on SoftHSM: what an
    allowed template yields is a session key made with `produced`."""

    def __init__(self, real: Any, session: Any, produced: dict[Attribute, Any]) -> None:
        self._real = real
        self._session = session
        self._produced = produced

    def unwrap_key(self, *args: Any, template: dict[Attribute, Any], **kwargs: Any) -> Any:
        key = self._real.unwrap_key(*args, template=template, **kwargs)  # refusals stay
        key.destroy()
        return self._session.generate_key(KeyType.GENERIC_SECRET, 160, template=self._produced)


@pytest.mark.parametrize(
    ("produced", "named"),
    [
        (
            {Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            "gives its value (CKA_VALUE)",
        ),
        (
            {Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True},
            "what it unwraps as a seed to sign with is extractable (CKA_EXTRACTABLE true)",
        ),
        (
            {
                Attribute.TOKEN: False,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.COPYABLE: True,
            },
            "is modifiable (CKA_MODIFIABLE true)",
        ),
    ],
)
def test_the_check_reads_back_what_an_allowed_template_made(
    vault: HsmSeedVault, produced: dict[Attribute, Any], named: str
) -> None:
    mechanism = wrap_mechanism(vault.owner.config.wrap_mechanism)

    def op(ctx: SessionContext) -> None:
        real = ctx.session.get_key(label=vault.owner.config.kek_label)
        check_unwrap_is_confined(
            ctx.session,
            _LyingKek(real, ctx.session, produced),
            lambda key: vault._wrap_and_destroy(ctx, key).data,
            mechanism,
            "'lying'",
        )

    with pytest.raises(HsmKeyUnsafe) as refused:
        vault.owner.run("checking a lying KEK", op)
    assert named in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_kek_made_by_this_release_passes(vault: HsmSeedVault) -> None:
    vault.check_keys()


def test_provisioning_a_kek_that_fails_the_check_leaves_nothing(
    softhsm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otphsm.hsm.provision import provision

    config = softhsm.token(BARE_TOKEN).hsm_config(
        kek_label="rollback-kek", pepper_label="rollback-pepper"
    )
    previous = {**templates.KEK, Attribute.UNWRAP_TEMPLATE: PREVIOUS_RELEASE_UNWRAP_TEMPLATE}
    monkeypatch.setattr(templates, "KEK", previous)
    with HsmSessionOwner(config) as owner:
        with pytest.raises(HsmKeyUnsafe, match="a copyable key"):
            provision(owner, softhsm.so_pin)
        left = owner.run(
            "listing",
            lambda ctx: [
                key[Attribute.LABEL]
                for key in ctx.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
            ],
        )
    assert "rollback-kek" not in left and "rollback-pepper" not in left
