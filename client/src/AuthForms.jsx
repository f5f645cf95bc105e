import { useState } from "react";
import { api, formErrors, NO_ERRORS } from "./api.js";
import Field, { CodeField, FormError } from "./Field.jsx";
import { passkeysSupported, verifyWithPasskey } from "./passkeys.js";

/** Sign up. The API checks that the confirmation matches (422 on password_confirmation). */
export function SignupForm({ onLoggedIn }) {
  const [errors, setErrors] = useState(NO_ERRORS);

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const form = new FormData(event.currentTarget);
    const result = await api("/signup", {
      method: "POST",
      body: {
        username: form.get("username"),
        password: form.get("password"),
        password_confirmation: form.get("password_confirmation"),
      },
    });
    if (result.ok) onLoggedIn(result.data);
    else setErrors(formErrors(result, ["username", "password", "password_confirmation"]));
  }

  return (
    <form id="signup" onSubmit={submit}>
      <h2>Sign up</h2>
      <Field
        form="signup"
        name="username"
        label="Username"
        errors={errors}
        autoComplete="username"
      />
      <Field
        form="signup"
        name="password"
        label="Password"
        errors={errors}
        type="password"
        autoComplete="new-password"
      />
      <Field
        form="signup"
        name="password_confirmation"
        label="Password again"
        errors={errors}
        type="password"
        autoComplete="new-password"
      />
      <FormError id="signup-error" errors={errors} />
      <button id="signup-submit" type="submit">Sign up</button>
    </form>
  );
}

/**
 * Log in; "remember me" asks for a cookie that outlives the browser session. For a user with a
 * second factor the password step answers 401 {"mfa_required": true, "methods": [...]} (and a
 * pending-login cookie): the form then asks for a code or a passkey, and POST /login/mfa (or
 * /login/mfa/passkey) finishes the login. "Sign in with a passkey" needs neither name nor
 * password: a passkey with user verification is both factors (POST /login/passkey).
 */
export function LoginForm({ onLoggedIn }) {
  const [errors, setErrors] = useState(NO_ERRORS);
  const [methods, setMethods] = useState(null); // the second step's methods, once asked for
  const [busy, setBusy] = useState(false);

  async function signInWithPasskey(event) {
    setErrors(NO_ERRORS);
    const remember = event.currentTarget.form.elements.remember.checked;
    setBusy(true);
    const result = await verifyWithPasskey("/login/passkey", { remember });
    setBusy(false);
    if (result.ok) onLoggedIn(result.data);
    else setErrors(formErrors(result, []));
  }

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const form = new FormData(event.currentTarget);
    const result = await api("/login", {
      method: "POST",
      body: {
        username: form.get("username"),
        password: form.get("password"),
        remember: form.get("remember") === "on",
      },
    });
    if (result.ok) onLoggedIn(result.data);
    else if (result.status === 401 && result.data?.mfa_required) {
      setMethods(result.data.methods || ["totp", "recovery_code"]);
    } else setErrors(formErrors(result, ["username", "password"]));
  }

  if (methods) {
    return (
      <SecondFactorForm methods={methods} onLoggedIn={onLoggedIn} onBack={() => setMethods(null)} />
    );
  }

  return (
    <form id="login" onSubmit={submit}>
      <h2>Log in</h2>
      <Field
        form="login"
        name="username"
        label="Username"
        errors={errors}
        autoComplete="username"
      />
      <Field
        form="login"
        name="password"
        label="Password"
        errors={errors}
        type="password"
        autoComplete="current-password"
      />
      <p className="field">
        <label>
          <input id="login-remember" name="remember" type="checkbox" /> Remember me
        </label>
      </p>
      <FormError id="login-error" errors={errors} />
      <button id="login-submit" type="submit" disabled={busy}>
        Log in
      </button>
      {passkeysSupported() && (
        <p className="field">
          <button id="login-passkey" type="button" onClick={signInWithPasskey} disabled={busy}>
            Sign in with a passkey
          </button>
        </p>
      )}
    </form>
  );
}

/**
 * The login's second step: a code from the authenticator app, a passkey, or one of the recovery
 * codes, as the API's `methods` allow. A passkey is one click: the browser asks for it.
 */
function SecondFactorForm({ methods, onLoggedIn, onBack }) {
  const withCode = methods.includes("totp");
  const withPasskey = methods.includes("passkey") && passkeysSupported();
  const withRecovery = methods.includes("recovery_code");
  const [errors, setErrors] = useState(NO_ERRORS);
  // Typing a recovery code: from the start when there is nothing else to use.
  const [recovery, setRecovery] = useState(!withCode && !withPasskey);
  const [busy, setBusy] = useState(false);
  const field = recovery ? "recovery_code" : withCode ? "code" : null; // null: the passkey only

  function toggle() {
    setRecovery(!recovery);
    setErrors(NO_ERRORS);
  }

  async function submit(event) {
    event.preventDefault();
    if (!field) return;
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const value = new FormData(event.currentTarget).get(field);
    setBusy(true);
    const result = await api("/login/mfa", { method: "POST", body: { [field]: value } });
    setBusy(false);
    if (result.ok) onLoggedIn(result.data);
    else setErrors(formErrors(result, [field]));
  }

  async function passkey() {
    setErrors(NO_ERRORS);
    setBusy(true);
    const result = await verifyWithPasskey("/login/mfa/passkey");
    setBusy(false);
    if (result.ok) onLoggedIn(result.data);
    else setErrors(formErrors(result, []));
  }

  let why;
  if (recovery) why = "Enter one of the recovery codes you saved. Each one works once.";
  else if (withCode && withPasskey) {
    why =
      "Your password was right. Now enter the 6-digit code your authenticator app shows, or " +
      "use a passkey.";
  } else if (withCode) {
    why = "Your password was right. Now enter the 6-digit code your authenticator app shows.";
  } else why = "Your password was right. Now confirm it is you with your passkey.";

  let toggleText = null; // the other way to type something, if any
  if (withRecovery && withCode) {
    toggleText = recovery ? "Use your authenticator app instead" : "Use a recovery code instead";
  } else if (withRecovery && withPasskey) {
    toggleText = recovery ? "Use your passkey instead" : "Use a recovery code instead";
  }

  return (
    <form id="login-mfa" onSubmit={submit} aria-describedby="login-mfa-why">
      <h2>Log in: second step</h2>
      <p id="login-mfa-why">{why}</p>
      {field === "recovery_code" && (
        <Field
          key="recovery_code"
          form="login-mfa"
          name="recovery_code"
          label="Recovery code"
          errors={errors}
          autoComplete="off"
          spellCheck={false}
          autoFocus
        />
      )}
      {field === "code" && (
        <CodeField key="code" form="login-mfa" errors={errors} />
      )}
      <FormError id="login-mfa-error" errors={errors} />
      {field && (
        <button id="login-mfa-submit" type="submit" disabled={busy}>
          Log in
        </button>
      )}
      {withPasskey && !(recovery && !withCode) && (
        <>
          {field && " or "}
          <button
            id="login-mfa-passkey"
            type="button"
            onClick={passkey}
            disabled={busy}
            autoFocus={!field}
          >
            Use a passkey
          </button>
        </>
      )}
      <p className="field">
        {toggleText && (
          <>
            <button id="login-mfa-toggle" type="button" className="link" onClick={toggle}>
              {toggleText}
            </button>
            {" · "}
          </>
        )}
        <button id="login-mfa-back" type="button" className="link" onClick={onBack}>
          Start over
        </button>
      </p>
    </form>
  );
}
