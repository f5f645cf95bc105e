/** A labelled input with its 422 messages beside it. Ids are `${form}-${name}` (for tests too). */
export default function Field({ form, name, label, errors, ...input }) {
  const id = `${form}-${name}`;
  const messages = errors.fields[name];
  return (
    <p className="field">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        name={name}
        aria-invalid={messages ? true : undefined}
        aria-describedby={messages ? `${id}-error` : undefined}
        {...input}
      />
      {messages && (
        <span className="field-error" id={`${id}-error`}>
          {messages.join(" ")}
        </span>
      )}
    </p>
  );
}

/** The field for a code from an authenticator app (name "code"). */
export function CodeField({ form, errors }) {
  return (
    <Field
      form={form}
      name="code"
      label="Code from your authenticator app"
      errors={errors}
      inputMode="numeric"
      autoComplete="one-time-code"
      autoFocus
    />
  );
}

/** The form's top-level error sentence, if any. */
export function FormError({ id, errors }) {
  if (!errors.message) return null;
  return (
    <p className="error" id={id} role="alert">
      {errors.message}
    </p>
  );
}
