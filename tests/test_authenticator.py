"""The software authenticator against py_webauthn itself: what it makes verifies, what it forges
does not. Plain functions, no app or database."""

import json
from typing import Any

import pytest
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers import base64url_to_bytes, parse_authentication_credential_json
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authenticator import InvalidStateError, NotAllowedError, SoftAuthenticator

RP_ID = "app.example.com"
ORIGIN = "https://app.example.com"
USER_ID = b"user-handle-0001"


def registration_options(
    resident_key: ResidentKeyRequirement = ResidentKeyRequirement.REQUIRED,
    exclude: list[bytes] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    options = generate_registration_options(
        rp_id=RP_ID,
        rp_name="Example",
        user_name="ada@example.com",
        user_id=USER_ID,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=resident_key,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=i) for i in exclude or []],
    )
    return options.challenge, json.loads(options_to_json(options))


def verify_registration(response: str | dict[str, Any], challenge: bytes, **kwargs: Any) -> Any:
    return verify_registration_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
        **kwargs,
    )


def register(auth: SoftAuthenticator, **kwargs: Any) -> tuple[bytes, bytes]:
    """A verified registration: the credential id and the COSE public key the server stores."""
    challenge, options = registration_options(**kwargs)
    verified = verify_registration(auth.create(options, ORIGIN), challenge)
    return verified.credential_id, verified.credential_public_key


def authentication_options(allow: list[bytes] | None = None) -> tuple[bytes, dict[str, Any]]:
    options = generate_authentication_options(
        rp_id=RP_ID,
        allow_credentials=[PublicKeyCredentialDescriptor(id=i) for i in allow or []],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options.challenge, json.loads(options_to_json(options))


def verify_authentication(
    response: dict[str, Any], challenge: bytes, public_key: bytes, sign_count: int
) -> VerifiedAuthentication:
    return verify_authentication_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=public_key,
        credential_current_sign_count=sign_count,
        require_user_verification=True,
    )


def test_registration_verifies() -> None:
    auth = SoftAuthenticator()
    challenge, options = registration_options()
    response = auth.create(options, ORIGIN)
    verified = verify_registration(json.dumps(response), challenge)  # as the request body says
    (cred,) = auth.credentials
    assert verified.credential_id == cred.id == base64url_to_bytes(response["id"])
    assert 16 <= len(cred.id) <= 32
    assert verified.credential_public_key == cred.cose_public_key()
    assert verified.sign_count == 0
    assert verified.fmt == AttestationFormat.NONE
    assert verified.user_verified
    assert verified.credential_device_type == CredentialDeviceType.SINGLE_DEVICE
    assert not verified.credential_backed_up
    assert cred.rp_id == RP_ID and cred.user_handle == USER_ID and cred.discoverable


def test_synced_passkey_is_multi_device_and_backed_up() -> None:
    challenge, options = registration_options()
    verified = verify_registration(
        SoftAuthenticator(synced=True).create(options, ORIGIN), challenge
    )
    assert verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    assert verified.credential_backed_up


def test_authentication_with_allow_credentials_counts_up() -> None:
    auth = SoftAuthenticator()
    cred_id, public_key = register(auth, resident_key=ResidentKeyRequirement.DISCOURAGED)
    sign_count = 0
    for expected in (1, 2):
        challenge, options = authentication_options(allow=[b"someone else", cred_id])
        response = auth.get(options, ORIGIN)
        verified = verify_authentication(response, challenge, public_key, sign_count)
        assert verified.credential_id == cred_id
        assert verified.new_sign_count == expected and verified.user_verified
        sign_count = verified.new_sign_count
    assert response["response"]["userHandle"] is None  # not discoverable: no user handle


def test_discoverable_login_returns_the_user_handle() -> None:
    auth = SoftAuthenticator()
    cred_id, public_key = register(auth)
    challenge, options = authentication_options()
    assert options["allowCredentials"] == []
    response = auth.get(options, ORIGIN)
    # The server finds the account by userHandle / rawId: py_webauthn does not check either.
    assert parse_authentication_credential_json(response).response.user_handle == USER_ID
    assert base64url_to_bytes(response["rawId"]) == cred_id
    assert verify_authentication(response, challenge, public_key, 0).new_sign_count == 1


def test_a_non_discoverable_credential_cannot_log_in_without_a_username() -> None:
    auth = SoftAuthenticator()
    register(auth, resident_key=ResidentKeyRequirement.DISCOURAGED)
    with pytest.raises(NotAllowedError):
        auth.get(authentication_options()[1], ORIGIN)


def test_several_passkeys_for_one_rp_need_a_choice() -> None:
    auth = SoftAuthenticator()
    register(auth)
    second_id, public_key = register(auth)
    challenge, options = authentication_options()
    with pytest.raises(NotAllowedError, match="credential_id"):
        auth.get(options, ORIGIN)
    response = auth.get(options, ORIGIN, credential_id=second_id)
    assert verify_authentication(response, challenge, public_key, 0).credential_id == second_id


def test_exclude_credentials_refuses_a_second_registration() -> None:
    auth = SoftAuthenticator()
    cred_id, _ = register(auth)
    _, options = registration_options(exclude=[cred_id])
    with pytest.raises(InvalidStateError):
        auth.create(options, ORIGIN)
    register(SoftAuthenticator(), exclude=[cred_id])  # another authenticator may register


@pytest.mark.parametrize(
    ("origin", "rp_id", "message"),
    [("https://evil.example.net", None, "origin"), (ORIGIN, "evil.example.net", "RP ID")],
)
def test_registration_for_another_origin_or_rp_id_is_refused(
    origin: str, rp_id: str | None, message: str
) -> None:
    challenge, options = registration_options()
    response = SoftAuthenticator().create(options, origin, rp_id=rp_id)
    with pytest.raises(InvalidRegistrationResponse, match=message):
        verify_registration(response, challenge)


@pytest.mark.parametrize(
    ("origin", "rp_id", "message"),
    [("https://evil.example.net", None, "origin"), (ORIGIN, "evil.example.net", "RP ID")],
)
def test_assertion_for_another_origin_or_rp_id_is_refused(
    origin: str, rp_id: str | None, message: str
) -> None:
    auth = SoftAuthenticator()
    cred_id, public_key = register(auth)
    challenge, options = authentication_options(allow=[cred_id])
    options["rpId"] = RP_ID  # what a page on `origin` could still ask for
    response = auth.get(options, origin, rp_id=rp_id)
    with pytest.raises(InvalidAuthenticationResponse, match=message):
        verify_authentication(response, challenge, public_key, 0)


def test_replayed_assertion_is_refused_by_the_counter() -> None:
    auth = SoftAuthenticator()
    cred_id, public_key = register(auth)
    challenge, options = authentication_options(allow=[cred_id])
    first = verify_authentication(auth.get(options, ORIGIN), challenge, public_key, 0)
    with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
        verify_authentication(auth.replay(), challenge, public_key, first.new_sign_count)


def test_stale_sign_count_is_refused() -> None:
    auth = SoftAuthenticator()
    cred_id, public_key = register(auth)
    count = 0
    for _ in range(2):
        challenge, options = authentication_options(allow=[cred_id])
        count = verify_authentication(
            auth.get(options, ORIGIN), challenge, public_key, count
        ).new_sign_count
    challenge, options = authentication_options(allow=[cred_id])
    response = auth.get(options, ORIGIN, sign_count=1)  # a cloned key, behind the real one
    with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
        verify_authentication(response, challenge, public_key, count)


def test_a_counter_stuck_at_zero_passes_so_challenges_must_be_single_use() -> None:
    """py_webauthn skips the counter check when both counts are 0 (synced passkeys report 0):
    only the server's one-time challenge stops this replay."""
    auth = SoftAuthenticator(synced=True)
    cred_id, public_key = register(auth)
    challenge, options = authentication_options(allow=[cred_id])
    verify_authentication(auth.get(options, ORIGIN, sign_count=0), challenge, public_key, 0)
    assert verify_authentication(auth.replay(), challenge, public_key, 0).new_sign_count == 0


def test_user_not_verified_is_refused_when_required() -> None:
    auth = SoftAuthenticator()
    challenge, options = registration_options()
    with pytest.raises(InvalidRegistrationResponse, match="User verification"):
        verify_registration(auth.create(options, ORIGIN, user_verified=False), challenge)
    cred_id, public_key = register(auth)
    challenge, options = authentication_options(allow=[cred_id])
    with pytest.raises(InvalidAuthenticationResponse, match="User verification"):
        verify_authentication(
            auth.get(options, ORIGIN, user_verified=False), challenge, public_key, 0
        )


def test_signature_with_the_wrong_key_is_refused() -> None:
    auth = SoftAuthenticator()
    cred_id, public_key = register(auth)
    challenge, options = authentication_options(allow=[cred_id])
    with pytest.raises(InvalidAuthenticationResponse, match="signature"):
        verify_authentication(auth.get(options, ORIGIN, wrong_key=True), challenge, public_key, 0)


def test_another_challenge_is_refused() -> None:
    auth = SoftAuthenticator()
    cred_id, public_key = register(auth)
    _, options = authentication_options(allow=[cred_id])
    other_challenge, _ = authentication_options(allow=[cred_id])
    with pytest.raises(InvalidAuthenticationResponse, match="challenge"):
        verify_authentication(auth.get(options, ORIGIN), other_challenge, public_key, 0)
