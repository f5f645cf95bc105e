// Passkeys (WebAuthn). Every ceremony is two calls to the API around one question to the
// browser: POST .../options gives the options JSON (and sets the `webauthn` cookie its challenge
// is tied to, which is why api() sends credentials: "include"), navigator.credentials.create()
// or .get() asks the authenticator, and its answer, as toJSON() gives it, goes to the API.
import { api } from "./api.js";

/** Can this browser use passkeys at all? (A secure context: https, or http://localhost.) */
export function passkeysSupported() {
  return (
    typeof window !== "undefined" &&
    window.isSecureContext &&
    typeof window.PublicKeyCredential === "function" &&
    typeof navigator.credentials?.create === "function"
  );
}

/**
 * Registers a new passkey: POST /me/passkeys/options, navigator.credentials.create(), POST
 * /me/passkeys {credential, name}. Returns api()'s result ({ok, status, data, ...}); a refusal by
 * the browser or the user is a result too ({ok: false, status: 0, data: {error}}).
 */
export async function registerPasskey(name) {
  const options = await api("/me/passkeys/options", { method: "POST" });
  if (!options.ok) return options;
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: creationOptions(options.data) });
  } catch (error) {
    return refused(error, "create");
  }
  const body = { credential: credentialJSON(credential) };
  if (name) body.name = name;
  return api("/me/passkeys", { method: "POST", body });
}

/**
 * Answers a challenge with a passkey: POST <path>/options, navigator.credentials.get(), POST
 * <path> {credential, ...body}. For "/login/passkey" (any passkey, naming no one),
 * "/login/mfa/passkey" (the pending login's) and "/reauthenticate/passkey" (yours).
 */
export async function verifyWithPasskey(path, body = {}) {
  const options = await api(`${path}/options`, { method: "POST", stepUp: false });
  if (!options.ok) return options;
  let assertion;
  try {
    assertion = await navigator.credentials.get({ publicKey: requestOptions(options.data) });
  } catch (error) {
    return refused(error, "get");
  }
  if (!assertion) return refused({ name: "NotAllowedError" }, "get");
  const answer = { ...body, credential: credentialJSON(assertion) };
  return api(path, { method: "POST", body: answer, stepUp: false });
}

/** What the browser said, as a failed call's result, in a sentence for the user. */
function refused(error, kind) {
  const sentence =
    {
      NotAllowedError:
        kind === "create"
          ? "No passkey was made: the request was cancelled or timed out."
          : "No passkey was used: the request was cancelled or timed out.",
      AbortError: "The passkey request was cancelled.",
      InvalidStateError: "This device already holds a passkey for your account.",
      SecurityError: "Passkeys do not work on this address (the site's domain does not match).",
      NotSupportedError: "This device cannot make the kind of passkey this site needs.",
    }[error?.name] ||
    `Your browser could not use a passkey${error?.message ? `: ${error.message}` : "."}`;
  return {
    ok: false,
    status: 0,
    data: { error: sentence },
    headers: new Headers(),
    url: "",
    cancelled: error?.name === "NotAllowedError" || error?.name === "AbortError",
  };
}

// The JSON <-> ArrayBuffer conversions: the browser's own where it has them (Chromium, Firefox
// and Safari do), else a small fallback for the fields the API's options and answers use.

function creationOptions(json) {
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    user: { ...json.user, id: fromBase64url(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map(descriptor),
  };
}

function requestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    allowCredentials: (json.allowCredentials || []).map(descriptor),
  };
}

function descriptor(json) {
  return { ...json, id: fromBase64url(json.id) };
}

function credentialJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const { response } = credential;
  const json = {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    clientExtensionResults: credential.getClientExtensionResults?.() ?? {},
    response: { clientDataJSON: toBase64url(response.clientDataJSON) },
  };
  if (response.attestationObject) {
    json.response.attestationObject = toBase64url(response.attestationObject);
    json.response.transports = response.getTransports?.() ?? [];
  } else {
    json.response.authenticatorData = toBase64url(response.authenticatorData);
    json.response.signature = toBase64url(response.signature);
    if (response.userHandle) json.response.userHandle = toBase64url(response.userHandle);
  }
  return json;
}

function fromBase64url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer;
}

function toBase64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
