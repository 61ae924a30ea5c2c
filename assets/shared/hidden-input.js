// The hidden input through which a widget hands JSON to an ordinary form POST.

/** The form's hidden input named `name`, created (appended to the form) when missing. */
export function ensureHiddenInput(htmlForm, name) {
  const existing = Array.from(htmlForm.elements).find((element) => element.name === name && element.type === 'hidden');
  if (existing) {
    return existing;
  }
  const input = document.createElement('input');
  input.type = 'hidden';
  input.name = name;
  htmlForm.append(input);
  return input;
}
