// The server's field errors (ValidationFailed.errors: {"data.path": ["message", ...]}) under
// their fields in a form-js Form, kept until the user edits that field.
//
// form-js re-validates a field on mount (when it has a value), on blur and on submit, and
// each time replaces that field's errors with its own verdict, which knows nothing of check
// digits and the like. So the form's `validator` answers with the server's messages for as
// long as a field still holds the value the server refused. Those messages never block a
// submission by themselves: the server judges the corrected (or unchanged) data again.

class ServerErrors {
  constructor(messagesByPath, eventBus, form, validator, formFields, formFieldRegistry, formFieldInstanceRegistry, pathRegistry) {
    this._messagesByPath = normalize(messagesByPath);
    this._form = form;
    this._formFields = formFields;
    this._fields = formFieldRegistry;
    this._instances = formFieldInstanceRegistry;
    this._paths = pathRegistry;
    this._loadedData = {};
    this._editedPaths = new Set();
    this._unplaced = [];

    // form-js exports no Validator class to extend, so the service is wrapped where it is made.
    this._ownRules = validator.validateFieldInstance.bind(validator);
    validator.validateFieldInstance = (fieldInstance, value) => {
      const standing = this._standing(fieldInstance.valuePath.join('.'), value);
      // The server checked the same value against the same rules and more: its word suffices.
      return standing.length ? standing : this._ownRules(fieldInstance, value);
    };

    eventBus.on('import.done', ({ error }) => {
      if (!error) {
        this._showAfterImport();
      }
    });
  }

  /** Messages for no field of the form (e.g. "_schema"), for a summary above it. */
  unplacedMessages() {
    return [...this._unplaced];
  }

  /** True when the form's own rules fail for `data` (what Form.submit() returned). */
  blocksSubmission(data) {
    return this._instances.getAllKeyed().some((fieldInstance) => {
      const field = this._fields.get(fieldInstance.id);
      return !field.disabled && this._ownRules(fieldInstance, getIn(data, fieldInstance.valuePath)).length > 0;
    });
  }

  _standing(path, value) {
    const messages = this._messagesByPath.get(path);
    if (!messages || this._editedPaths.has(path)) {
      return [];
    }
    if (JSON.stringify(value) !== JSON.stringify(getIn(this._loadedData, path.split('.')))) {
      this._editedPaths.add(path);
      return [];
    }
    return messages;
  }

  // Fields without a value are not validated on mount, so publish every message once here.
  _showAfterImport() {
    // initialData: the imported data after form-js filled in empty values, as its fields see it.
    this._loadedData = this._form._getState().initialData || {};
    this._editedPaths.clear();
    this._unplaced = [];
    const errors = {};
    const templates = this._pathTemplates();
    for (const [path, messages] of this._messagesByPath) {
      const errorPath = errorPathFor(path.split('.'), templates);
      if (errorPath) {
        setIn(errors, errorPath, messages);
      } else {
        this._unplaced.push(...messages);
      }
    }
    if (Object.keys(errors).length) {
      // _setState is how form-js itself publishes errors to its fields (as validate() does).
      this._form._setState({ errors });
    }
  }

  // Each keyed field's data path, "*" standing for a dynamic list's item index.
  _pathTemplates() {
    const fields = this._fields.getAll();
    const everyIndex = Object.fromEntries(fields.map((field) => [field.id, '*']));
    return fields
      .filter((field) => this._formFields.get(field.type)?.config.keyed)
      .map((field) => ({ id: field.id, template: this._paths.getValuePath(field, { indexes: everyIndex }).map(String) }));
  }
}
ServerErrors.$inject = [
  'config.serverErrors',
  'eventBus',
  'form',
  'validator',
  'formFields',
  'formFieldRegistry',
  'formFieldInstanceRegistry',
  'pathRegistry',
];

/** A form-js module (additionalModules); the errors come in the Form option `serverErrors`. */
export const ServerErrorsModule = {
  __init__: ['serverErrors'],
  serverErrors: ['type', ServerErrors],
};

function normalize(messagesByPath) {
  const normalized = new Map();
  for (const [path, messages] of Object.entries(messagesByPath || {})) {
    normalized.set(path, Array.isArray(messages) ? messages.map(String) : [String(messages)]);
  }
  return normalized;
}

// form-js keys a field's errors by [field id, ...item indexes of the lists around it].
function errorPathFor(segments, templates) {
  for (const { id, template } of templates) {
    if (template.length !== segments.length) {
      continue;
    }
    const indexes = [];
    const matches = template.every((part, i) => {
      if (part === '*') {
        indexes.push(Number(segments[i]));
        return /^\d+$/.test(segments[i]);
      }
      return part === segments[i];
    });
    if (matches) {
      return [id, ...indexes];
    }
  }
  return null;
}

function getIn(data, path) {
  return path.reduce((node, key) => (node == null ? undefined : node[key]), data);
}

function setIn(target, path, value) {
  let node = target;
  for (const key of path.slice(0, -1)) {
    node = node[key] ??= {};
  }
  node[path[path.length - 1]] = value;
}
