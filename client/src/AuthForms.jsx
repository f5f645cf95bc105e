import { useState } from "react";
import { api, formErrors, NO_ERRORS } from "./api.js";
import Field, { FormError } from "./Field.jsx";

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
 * pending-login cookie): the form then asks for a code, and POST /login/mfa finishes the login.
 */
export function LoginForm({ onLoggedIn }) {
  const [errors, setErrors] = useState(NO_ERRORS);
  const [methods, setMethods] = useState(null); // the second step's methods, once asked for

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
      <button id="login-submit" type="submit">Log in</button>
    </form>
  );
}

/** The login's second step: a code from the authenticator app, or one of the recovery codes. */
function SecondFactorForm({ methods, onLoggedIn, onBack }) {
  const [errors, setErrors] = useState(NO_ERRORS);
  const [recovery, setRecovery] = useState(!methods.includes("totp"));
  const [busy, setBusy] = useState(false);
  const field = recovery ? "recovery_code" : "code";

  function toggle() {
    setRecovery(!recovery);
    setErrors(NO_ERRORS);
  }

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const value = new FormData(event.currentTarget).get(field);
    setBusy(true);
    const result = await api("/login/mfa", { method: "POST", body: { [field]: value } });
    setBusy(false);
    if (result.ok) onLoggedIn(result.data);
    else setErrors(formErrors(result, [field]));
  }

  return (
    <form id="login-mfa" onSubmit={submit} aria-describedby="login-mfa-why">
      <h2>Log in: second step</h2>
      <p id="login-mfa-why">
        {recovery
          ? "Enter one of the recovery codes you saved. Each one works once."
          : "Your password was right. Now enter the 6-digit code your authenticator app shows."}
      </p>
      {recovery ? (
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
      ) : (
        <Field
          key="code"
          form="login-mfa"
          name="code"
          label="Code from your authenticator app"
          errors={errors}
          inputMode="numeric"
          autoComplete="one-time-code"
          autoFocus
        />
      )}
      <FormError id="login-mfa-error" errors={errors} />
      <button id="login-mfa-submit" type="submit" disabled={busy}>
        Log in
      </button>
      <p className="field">
        {methods.includes("totp") && methods.includes("recovery_code") && (
          <>
            <button id="login-mfa-toggle" type="button" className="link" onClick={toggle}>
              {recovery ? "Use your authenticator app instead" : "Use a recovery code instead"}
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
