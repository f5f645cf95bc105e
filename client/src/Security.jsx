import { useEffect, useRef, useState } from "react";
import { api, errorText, formErrors, NO_ERRORS } from "./api.js";
import Field, { CodeField, FormError } from "./Field.jsx";
import { passkeysSupported, registerPasskey } from "./passkeys.js";

/**
 * Your second factors: TOTP (an authenticator app) on or off, recovery codes, and passkeys.
 * Turning a factor on or off, adding or removing a passkey and new codes want a recent login;
 * api() asks for it (StepUp.jsx).
 */
export default function Security({ onSessionEnded }) {
  const [mfa, setMfa] = useState(null); // GET /me/mfa
  const [error, setError] = useState(null);
  const [setup, setSetup] = useState(null); // {secret, otpauth_uri, qr_svg} until confirmed
  const [codes, setCodes] = useState(null); // recovery codes, shown this once
  const [turningOff, setTurningOff] = useState(false);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let ignore = false; // a response that arrives after this component is gone is dropped
    api("/me/mfa").then((result) => {
      if (ignore) return;
      if (result.status === 401) return onSessionEnded();
      if (!result.ok) return setError(errorText(result));
      setMfa(result.data);
    });
    return () => {
      ignore = true;
    };
  }, [onSessionEnded]);

  async function reload() {
    const result = await api("/me/mfa");
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setError(errorText(result));
    setMfa(result.data);
  }

  /** One action: its call, and what happens on success; every failure shows the same way. */
  async function act(call, onSuccess) {
    setError(null);
    setBusy(true);
    const result = await call();
    setBusy(false);
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setError(errorText(result));
    await onSuccess(result.data);
  }

  const start = () =>
    act(
      () => api("/me/mfa/totp", { method: "POST" }),
      (data) => {
        setCodes(null);
        setSetup(data);
      },
    );

  const turnOff = () =>
    act(
      () => api("/me/mfa/totp", { method: "DELETE" }),
      async () => {
        setTurningOff(false);
        setCodes(null);
        await reload();
      },
    );

  const newCodes = () =>
    act(
      () => api("/me/mfa/recovery-codes", { method: "POST" }),
      async (data) => {
        setCodes(data.recovery_codes);
        await reload();
      },
    );

  async function confirmed(recoveryCodes) {
    setSetup(null);
    setCodes(recoveryCodes);
    await reload();
  }

  if (mfa === null) {
    return (
      <section id="security" aria-labelledby="security-title">
        <h2 id="security-title">Security</h2>
        {error ? (
          <p className="error" id="security-error" role="alert">
            {error}
          </p>
        ) : (
          <p>Loading…</p>
        )}
      </section>
    );
  }

  const anyFactor = mfa.totp || mfa.passkeys > 0; // recovery codes go with any second factor
  return (
    <section id="security" aria-labelledby="security-title">
      <h2 id="security-title">Security</h2>
      <h3>Two-factor authentication</h3>
      <p id="totp-status">
        Authenticator app (TOTP): <strong>{mfa.totp ? "on" : "off"}</strong>
      </p>
      {anyFactor && <p id="recovery-codes-left">Recovery codes left: {mfa.recovery_codes_left}</p>}
      {mfa.required && !anyFactor && (
        <p className="notice" id="mfa-required">
          Your role needs a second factor: turn on two-factor authentication.
        </p>
      )}
      {error && (
        <p className="error" id="security-error" role="alert">
          {error}
        </p>
      )}

      {codes && <RecoveryCodes codes={codes} onDone={() => setCodes(null)} />}

      {setup && (
        <TotpSetup
          setup={setup}
          onConfirmed={confirmed}
          onCancel={() => setSetup(null)}
          onSessionEnded={onSessionEnded}
        />
      )}

      {!mfa.totp && !setup && (
        <p className="actions">
          <button id="totp-start" type="button" onClick={start} disabled={busy}>
            Turn on two-factor authentication
          </button>
        </p>
      )}

      {anyFactor && !turningOff && (
        <p className="actions">
          {mfa.totp && (
            <button id="totp-disable" type="button" onClick={() => setTurningOff(true)}>
              Turn off two-factor authentication
            </button>
          )}{" "}
          <button id="recovery-codes-new" type="button" onClick={newCodes} disabled={busy}>
            New recovery codes
          </button>
        </p>
      )}

      {turningOff && (
        <div id="totp-disable-prompt" role="group" aria-labelledby="totp-disable-question">
          <p id="totp-disable-question">
            Turn off two-factor authentication? Logging in will need only your password, and your
            recovery codes will stop working.
          </p>
          <p className="actions">
            <button id="totp-disable-confirm" type="button" onClick={turnOff} disabled={busy}>
              Yes, turn it off
            </button>{" "}
            <button id="totp-disable-cancel" type="button" onClick={() => setTurningOff(false)}>
              Keep it on
            </button>
          </p>
        </div>
      )}

      <Passkeys
        lastFactor={!mfa.totp && mfa.passkeys === 1}
        withRecoveryCodes={mfa.recovery_codes_left > 0}
        onChanged={reload}
        onSessionEnded={onSessionEnded}
      />
    </section>
  );
}

/** A timestamp from the API (ISO 8601, UTC) in the reader's own terms. */
function When({ at }) {
  return <time dateTime={at}>{new Date(at).toLocaleString()}</time>;
}

/**
 * Your passkeys: each with its name, when it was added and last used; rename, remove, and add
 * one (the browser asks the authenticator: this device, a phone, a security key).
 */
function Passkeys({ lastFactor, withRecoveryCodes, onChanged, onSessionEnded }) {
  const [passkeys, setPasskeys] = useState(null); // GET /me/passkeys
  const [error, setError] = useState(null);
  const [addErrors, setAddErrors] = useState(NO_ERRORS);
  const [added, setAdded] = useState(null); // the name of the one just added, said once
  const [renaming, setRenaming] = useState(null); // a passkey's id
  const [removing, setRemoving] = useState(null); // a passkey's id, while asking
  const [busy, setBusy] = useState(false);
  const supported = passkeysSupported();

  useEffect(() => {
    let ignore = false;
    api("/me/passkeys").then((result) => {
      if (ignore) return;
      if (result.status === 401) return onSessionEnded();
      if (!result.ok) return setError(errorText(result));
      setPasskeys(result.data);
    });
    return () => {
      ignore = true;
    };
  }, [onSessionEnded]);

  async function reload() {
    const result = await api("/me/passkeys");
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setError(errorText(result));
    setPasskeys(result.data);
    await onChanged(); // the count, and whether recovery codes are still offered
  }

  async function add(event) {
    event.preventDefault();
    const form = event.currentTarget;
    setError(null);
    setAdded(null);
    setAddErrors(NO_ERRORS);
    setBusy(true);
    const result = await registerPasskey(new FormData(form).get("name").trim());
    setBusy(false);
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setAddErrors(formErrors(result, ["name"]));
    form.reset();
    setAdded(result.data.name);
    await reload();
  }

  async function rename(passkey, name) {
    const result = await api(`/me/passkeys/${passkey.id}`, { method: "PATCH", body: { name } });
    if (result.status === 401) {
      onSessionEnded();
      return NO_ERRORS;
    }
    if (!result.ok) return formErrors(result, ["name"]);
    setPasskeys((list) => list.map((p) => (p.id === passkey.id ? result.data : p)));
    setRenaming(null);
    return NO_ERRORS;
  }

  async function remove(passkey) {
    setError(null);
    setAdded(null);
    setBusy(true);
    const result = await api(`/me/passkeys/${passkey.id}`, { method: "DELETE" });
    setBusy(false);
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setError(errorText(result)); // 403: the prompt was cancelled
    setRemoving(null);
    await reload();
  }

  return (
    <div id="passkeys" role="group" aria-labelledby="passkeys-title">
      <h3 id="passkeys-title">Passkeys</h3>
      <p>
        A passkey logs you in without a password (your device asks for your fingerprint, face or
        PIN), and is a second factor after your password.
      </p>
      {error && (
        <p className="error" id="passkeys-error" role="alert">
          {error}
        </p>
      )}
      {added && (
        <p id="passkey-added" role="status">
          Passkey “{added}” added.
        </p>
      )}
      {passkeys === null ? (
        !error && <p>Loading…</p>
      ) : passkeys.length === 0 ? (
        <p id="passkeys-none">You have no passkeys.</p>
      ) : (
        <ul id="passkeys-list">
          {passkeys.map((passkey) => (
            <li key={passkey.id} className="passkey" data-passkey-id={passkey.id}>
              {renaming === passkey.id ? (
                <RenamePasskey
                  passkey={passkey}
                  onRename={(name) => rename(passkey, name)}
                  onCancel={() => setRenaming(null)}
                />
              ) : (
                <>
                  <strong className="passkey-name">{passkey.name}</strong>
                  <span className="meta passkey-created">
                    {" "}
                    Added <When at={passkey.created_at} />.
                  </span>
                  <span className="meta passkey-last-used">
                    {" "}
                    Last used:{" "}
                    {passkey.last_used_at ? <When at={passkey.last_used_at} /> : "never"}.
                  </span>{" "}
                  <span className="actions">
                    <button
                      className="passkey-rename"
                      type="button"
                      aria-label={`Rename ${passkey.name}`}
                      onClick={() => {
                        setAdded(null);
                        setRemoving(null);
                        setRenaming(passkey.id);
                      }}
                    >
                      Rename
                    </button>{" "}
                    <button
                      className="passkey-remove"
                      type="button"
                      aria-label={`Remove ${passkey.name}`}
                      onClick={() => {
                        setRenaming(null);
                        setRemoving(passkey.id);
                      }}
                    >
                      Remove
                    </button>
                  </span>
                </>
              )}
              {removing === passkey.id && (
                <div
                  className="passkey-remove-prompt"
                  role="group"
                  aria-label={`Remove ${passkey.name}?`}
                >
                  <p>
                    Remove the passkey “{passkey.name}”? It will no longer log you in.
                    {lastFactor &&
                      withRecoveryCodes &&
                      " It is your last second factor: your recovery codes will stop working too."}
                  </p>
                  <p className="actions">
                    <button
                      className="passkey-remove-confirm"
                      type="button"
                      onClick={() => remove(passkey)}
                      disabled={busy}
                    >
                      Yes, remove it
                    </button>{" "}
                    <button
                      className="passkey-remove-cancel"
                      type="button"
                      onClick={() => setRemoving(null)}
                    >
                      Keep it
                    </button>
                  </p>
                </div>
              )}
            </li>
          ))}
        </ul>
      )}
      {supported ? (
        <form id="passkey-add" onSubmit={add}>
          <Field
            form="passkey-add"
            name="name"
            label="Name for the new passkey (optional)"
            errors={addErrors}
            placeholder="Laptop, phone, security key…"
            maxLength={100}
            autoComplete="off"
          />
          <FormError id="passkey-add-error" errors={addErrors} />
          <button id="passkey-add-submit" type="submit" disabled={busy}>
            Add a passkey
          </button>
        </form>
      ) : (
        <p id="passkeys-unsupported">
          This browser cannot make passkeys here (they need a secure page: https, or localhost).
        </p>
      )}
    </div>
  );
}

/** The rename form in a passkey's row: its name, changed and saved (PATCH). */
function RenamePasskey({ passkey, onRename, onCancel }) {
  const [errors, setErrors] = useState(NO_ERRORS);
  const [busy, setBusy] = useState(false);
  const form = `passkey-rename-${passkey.id}`;

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS);
    const name = new FormData(event.currentTarget).get("name");
    setBusy(true);
    const problems = await onRename(name);
    setBusy(false);
    setErrors(problems);
  }

  return (
    <form
      id={form}
      className="passkey-rename-form"
      onSubmit={submit}
      onKeyDown={(event) => {
        if (event.key === "Escape") onCancel();
      }}
    >
      <Field
        form={form}
        name="name"
        label={`New name for “${passkey.name}”`}
        errors={errors}
        defaultValue={passkey.name}
        maxLength={100}
        autoComplete="off"
        autoFocus
      />
      <FormError id={`${form}-error`} errors={errors} />
      <button className="passkey-rename-save" type="submit" disabled={busy}>
        Save
      </button>{" "}
      <button className="passkey-rename-cancel" type="button" onClick={onCancel}>
        Cancel
      </button>
    </form>
  );
}

/** segno's SVG has no xmlns, which an SVG loaded as an image needs. */
function svgDataUrl(svg) {
  const withNamespace = /^<svg\b[^>]*\sxmlns=/.test(svg)
    ? svg
    : svg.replace(/^<svg\b/, '<svg xmlns="http://www.w3.org/2000/svg"');
  return "data:image/svg+xml;utf8," + encodeURIComponent(withNamespace);
}

/** A new secret: its QR code and the key as text, then a first code turns it on. */
function TotpSetup({ setup, onConfirmed, onCancel, onSessionEnded }) {
  const [errors, setErrors] = useState(NO_ERRORS);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const code = new FormData(event.currentTarget).get("code");
    setBusy(true);
    const result = await api("/me/mfa/totp/confirm", { method: "POST", body: { code } });
    setBusy(false);
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setErrors(formErrors(result, ["code"]));
    onConfirmed(result.data.recovery_codes);
  }

  return (
    <div id="totp-setup" role="group" aria-labelledby="totp-setup-title">
      <h3 id="totp-setup-title">Set up your authenticator app</h3>
      <ol>
        <li>
          <p>Scan this QR code with your authenticator app:</p>
          <img
            id="totp-qr"
            src={svgDataUrl(setup.qr_svg)}
            alt="QR code of your new two-factor secret"
          />
        </li>
        <li>
          <p>
            Or enter this key in the app by hand:{" "}
            <code id="totp-secret" data-testid="totp-secret">
              {setup.secret}
            </code>{" "}
            (<a href={setup.otpauth_uri}>open in an authenticator app on this device</a>)
          </p>
        </li>
        <li>
          <form id="totp-confirm" onSubmit={submit}>
            <CodeField form="totp-confirm" errors={errors} />
            <FormError id="totp-confirm-error" errors={errors} />
            <button id="totp-confirm-submit" type="submit" disabled={busy}>
              Turn on
            </button>{" "}
            <button id="totp-cancel" type="button" onClick={onCancel}>
              Cancel
            </button>
          </form>
        </li>
      </ol>
    </div>
  );
}

/** The ten recovery codes, shown this once. */
function RecoveryCodes({ codes, onDone }) {
  const box = useRef(null);
  useEffect(() => box.current.focus(), [codes]); // the button that led here may be gone
  return (
    <div
      ref={box}
      id="recovery-codes"
      role="group"
      aria-labelledby="recovery-codes-title"
      tabIndex={-1}
    >
      <h3 id="recovery-codes-title">Your recovery codes</h3>
      <p id="recovery-codes-note">
        Save these codes somewhere safe, such as a password manager: this is the only time they are
        shown. Each one logs you in once if you lose your authenticator app. Any codes you had
        before no longer work.
      </p>
      <ul id="recovery-codes-list">
        {codes.map((code) => (
          <li key={code}>
            <code>{code}</code>
          </li>
        ))}
      </ul>
      <button id="recovery-codes-done" type="button" onClick={onDone}>
        I have saved them
      </button>
    </div>
  );
}
