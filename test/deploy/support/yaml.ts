import yaml from 'js-yaml';

export type YamlObject = Record<string, unknown>;

/** Parses a multi-document YAML stream (e.g. `kubectl kustomize` output) into objects. */
export function parseDocuments(text: string): YamlObject[] {
  return yaml.loadAll(text).filter((doc): doc is YamlObject => isObject(doc));
}

export function parseDocument(text: string): YamlObject {
  const doc = yaml.load(text);
  if (!isObject(doc)) throw new Error('expected a YAML mapping');
  return doc;
}

export function isObject(value: unknown): value is YamlObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Follows a path of keys and indices; undefined where it leads nowhere. */
export function dig(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof key === 'number') {
      if (!Array.isArray(current)) return undefined;
      current = current[key];
    } else {
      if (!isObject(current)) return undefined;
      current = current[key];
    }
  }
  return current;
}
