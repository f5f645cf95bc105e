"""A software passkey authenticator, with the browser's part of the ceremony, for tests.

It models what `navigator.credentials.create()` / `.get()` and then `PublicKeyCredential.toJSON()`
give the page: it reads the options JSON the server sends (py_webauthn's `options_to_json()`)
and returns the credential JSON the server verifies, all binary fields base64url without padding.
Credentials live in memory: ES256 (COSE -7, EC P-256) keys, a signature counter that starts at 0
and goes up by one per assertion, discoverable or not as `residentKey` asks.

It does not model: any attestation other than "none" (AAGUID is all zeros), any algorithm other
than ES256, extensions, token binding, real user presence or verification (`user_verified` is just
the UV flag), or the browser's own checks of origin and RP ID: it answers whatever it is told,
which is what lets the negative tests forge responses (`rp_id=`, `sign_count=`, `wrong_key=`,
`replay()`, any `origin`). It does honour `excludeCredentials` and `allowCredentials`.
"""

import copy
import hashlib
import json
import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ES256 = -7
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40  # authenticator data flags


class NotAllowedError(Exception):
    """The browser's NotAllowedError: no credential here answers these options."""


class InvalidStateError(Exception):
    """The browser's InvalidStateError: a credential in excludeCredentials is already here."""


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).decode("ascii").rstrip("=")


def from_b64url(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0
    discoverable: bool = True

    def cose_public_key(self) -> bytes:
        """The COSE_Key in the attested credential data (and what the server should store)."""
        numbers = self.private_key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: x, -3: y})  # kty EC2, alg, crv P-256


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    data = {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    return json.dumps(data, separators=(",", ":")).encode()


def _rp_id(explicit: str | None, origin: str) -> str:
    """The RP ID the options name, else the origin's host (the spec's default)."""
    return explicit or urlsplit(origin).hostname or ""


class SoftAuthenticator:
    def __init__(self, *, synced: bool = False) -> None:
        """`synced=True` marks credentials backup eligible and backed up (BE|BS), as iCloud
        Keychain or Google Password Manager passkeys are; the default is a device-bound key."""
        self.credentials: list[Credential] = []
        self.synced = synced
        self.last_assertion: dict[str, Any] | None = None

    def credential(self, credential_id: bytes) -> Credential:
        for cred in self.credentials:
            if cred.id == credential_id:
                return cred
        raise KeyError(f"no credential {b64url(credential_id)} on this authenticator")

    def _flags(self, user_verified: bool) -> int:
        return UP | (UV if user_verified else 0) | (BE | BS if self.synced else 0)

    def create(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        user_verified: bool = True,
        attestation: str = "none",
        rp_id: str | None = None,
    ) -> dict[str, Any]:
        """Register a new credential; `rp_id` forges the RP ID hashed into authData."""
        if attestation != "none":
            raise NotImplementedError("only 'none' attestation is modelled")
        if ES256 not in [param["alg"] for param in options["pubKeyCredParams"]]:
            raise NotImplementedError("the options do not offer ES256 (-7)")
        real_rp_id = _rp_id(options["rp"].get("id"), origin)
        excluded = {from_b64url(item["id"]) for item in options.get("excludeCredentials", [])}
        if any(c.id in excluded and c.rp_id == real_rp_id for c in self.credentials):
            raise InvalidStateError("this authenticator already holds an excluded credential")
        selection = options.get("authenticatorSelection", {})
        cred = Credential(
            id=secrets.token_bytes(secrets.choice(range(16, 33))),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=real_rp_id,
            user_handle=from_b64url(options["user"]["id"]),
            discoverable=selection.get("residentKey") in ("required", "preferred")
            or bool(selection.get("requireResidentKey")),
        )
        self.credentials.append(cred)
        auth_data = (
            hashlib.sha256((rp_id or real_rp_id).encode()).digest()
            + bytes([self._flags(user_verified) | AT])
            + cred.sign_count.to_bytes(4, "big")
            + bytes(16)  # AAGUID
            + len(cred.id).to_bytes(2, "big")
            + cred.id
            + cred.cose_public_key()
        )
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = _client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": b64url(cred.id),
            "rawId": b64url(cred.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def _choose(self, rp_id: str, allowed: list[bytes], credential_id: bytes | None) -> Credential:
        if credential_id is not None:  # the user picked it, or the test forces it
            return self.credential(credential_id)
        if allowed:
            candidates = [c for c in self.credentials if c.id in allowed and c.rp_id == rp_id]
        else:
            candidates = [c for c in self.credentials if c.discoverable and c.rp_id == rp_id]
        if not candidates:
            raise NotAllowedError(f"no credential for {rp_id!r} answers these options")
        if len(candidates) > 1 and not allowed:
            raise NotAllowedError("several passkeys for this RP: pass credential_id to pick one")
        return candidates[0]

    def get(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        user_verified: bool = True,
        credential_id: bytes | None = None,
        rp_id: str | None = None,
        sign_count: int | None = None,
        wrong_key: bool = False,
    ) -> dict[str, Any]:
        """Sign in. `credential_id` picks a credential (even one not in allowCredentials);
        `rp_id` forges the RP ID hash; `sign_count` reports that counter instead of the next
        one (the stored counter is left alone); `wrong_key` signs with a fresh, unrelated key."""
        real_rp_id = _rp_id(options.get("rpId"), origin)
        allowed = [from_b64url(item["id"]) for item in options.get("allowCredentials", [])]
        cred = self._choose(real_rp_id, allowed, credential_id)
        if sign_count is None:
            cred.sign_count += 1
            sign_count = cred.sign_count
        auth_data = (
            hashlib.sha256((rp_id or real_rp_id).encode()).digest()
            + bytes([self._flags(user_verified)])
            + sign_count.to_bytes(4, "big")
        )
        client_data = _client_data("webauthn.get", options["challenge"], origin)
        key = ec.generate_private_key(ec.SECP256R1()) if wrong_key else cred.private_key
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))  # DER, as WebAuthn wants
        self.last_assertion = {
            "id": b64url(cred.id),
            "rawId": b64url(cred.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(cred.user_handle) if cred.discoverable else None,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
        return copy.deepcopy(self.last_assertion)

    def replay(self) -> dict[str, Any]:
        """The previous assertion again, byte for byte (same challenge, same counter)."""
        if self.last_assertion is None:
            raise NotAllowedError("nothing to replay: get() has not been called")
        return copy.deepcopy(self.last_assertion)
