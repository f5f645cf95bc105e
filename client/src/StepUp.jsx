import { useEffect, useRef, useState } from "react";
import { api, formErrors, NO_ERRORS, onReauthenticationRequired } from "./api.js";
import Field, { CodeField, FormError } from "./Field.jsx";
import { passkeysSupported, verifyWithPasskey } from "./passkeys.js";

/**
 * The confirm-it-is-you prompt. api() calls it when a request answers 403
 * {"reauthentication_required": true, "methods": [...]}: the user gives their password (or a
 * code from their authenticator app, when "totp" is among the methods, or a passkey, when
 * "passkey" is), POST /reauthenticate (or /reauthenticate/passkey) says yes, and api() sends the
 * refused request again. Cancel leaves the 403 as the answer.
 */
export default function StepUp() {
  const [prompt, setPrompt] = useState(null); // {methods, resolve, n} while asking
  const pending = useRef(null);

  useEffect(() => {
    let count = 0;
    const stop = onReauthenticationRequired(
      (methods) =>
        new Promise((resolve) => {
          count += 1;
          pending.current = resolve;
          setPrompt({ methods, resolve, n: count });
        }),
    );
    return () => {
      stop();
      pending.current?.(false); // gone (logged out): the waiting call gets its 403
      pending.current = null;
    };
  }, []);

  if (!prompt) return null;
  const done = (confirmed) => {
    pending.current = null;
    setPrompt(null);
    prompt.resolve(confirmed);
  };
  return <StepUpDialog key={prompt.n} methods={prompt.methods} onDone={done} />;
}

function StepUpDialog({ methods, onDone }) {
  const dialog = useRef(null);
  const withCode = methods.includes("totp");
  const withPasskey = methods.includes("passkey") && passkeysSupported();
  // The body's key, "password" or "code"; or "passkey": the browser asks for one.
  const [field, setField] = useState("password");
  const [errors, setErrors] = useState(NO_ERRORS);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const element = dialog.current;
    if (!element.open) element.showModal();
    element.querySelector("input:not([type=radio])")?.focus();
    return () => {
      if (element.open) element.close();
    };
  }, []);

  function choose(event) {
    setField(event.target.value);
    setErrors(NO_ERRORS);
  }

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const value = new FormData(event.currentTarget).get(field);
    setBusy(true);
    const result =
      field === "passkey"
        ? await verifyWithPasskey("/reauthenticate/passkey")
        : await api("/reauthenticate", { method: "POST", body: { [field]: value }, stepUp: false });
    setBusy(false);
    if (result.ok) onDone(true);
    else setErrors(formErrors(result, ["password", "code"]));
  }

  return (
    <dialog
      ref={dialog}
      id="step-up"
      aria-labelledby="step-up-title"
      aria-describedby="step-up-why"
      onCancel={(event) => {
        event.preventDefault(); // Escape: we close it ourselves, and say no
        onDone(false);
      }}
    >
      <form id="step-up-form" onSubmit={submit}>
        <h2 id="step-up-title">Confirm it is you</h2>
        <p id="step-up-why">
          This change needs a recent login. Confirm it is you and it will go ahead.
        </p>
        {(withCode || withPasskey) && (
          <fieldset>
            <legend>Confirm with</legend>
            <label>
              <input
                id="step-up-use-password"
                type="radio"
                name="method"
                value="password"
                checked={field === "password"}
                onChange={choose}
              />{" "}
              My password
            </label>
            {withCode && (
              <label>
                <input
                  id="step-up-use-code"
                  type="radio"
                  name="method"
                  value="code"
                  checked={field === "code"}
                  onChange={choose}
                />{" "}
                A code from my authenticator app
              </label>
            )}
            {withPasskey && (
              <label>
                <input
                  id="step-up-use-passkey"
                  type="radio"
                  name="method"
                  value="passkey"
                  checked={field === "passkey"}
                  onChange={choose}
                />{" "}
                A passkey
              </label>
            )}
          </fieldset>
        )}
        {field === "passkey" ? (
          <p id="step-up-passkey-note">
            Select Confirm and your browser will ask for your passkey.
          </p>
        ) : field === "password" ? (
          <Field
            key="password"
            form="step-up"
            name="password"
            label="Password"
            errors={errors}
            type="password"
            autoComplete="current-password"
          />
        ) : (
          <CodeField key="code" form="step-up" errors={errors} />
        )}
        <FormError id="step-up-error" errors={errors} />
        <p className="buttons">
          <button id="step-up-submit" type="submit" disabled={busy}>
            Confirm
          </button>{" "}
          <button id="step-up-cancel" type="button" onClick={() => onDone(false)}>
            Cancel
          </button>
        </p>
      </form>
    </dialog>
  );
}
