import { z } from 'zod';

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const TEXT_RULE = 'must be well-formed Unicode without U+0000';

/**
 * True for text every store can keep and every audit hash can cover: well-formed Unicode (RFC 8785
 * canonical JSON, which the hashes are computed over, has no encoding for a lone surrogate) without
 * U+0000 (PostgreSQL's `jsonb` and `text` cannot hold it). Anything else would fail later, with an
 * untyped error, or in one store and not in the other.
 */
export function isStorableText(s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s);
}

const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, 'g');

/** `s` with every U+0000 and lone surrogate replaced by U+FFFD (for an error message to record). */
export function toStorableText(s: string): string {
  return isStorableText(s) ? s : s.replaceAll('\u0000', '\ufffd').replace(LONE_SURROGATES, '\ufffd');
}

/** A string of host or executor input: storable text (see {@link isStorableText}). */
export const str = () => z.string().refine(isStorableText, TEXT_RULE);

/** How deep JSON data may nest: deeper is taken for a mistake (and would cost a deep recursion). */
export const MAX_JSON_DEPTH = 32;

/**
 * The first reason `value` is not JSON data that every store keeps exactly as it was hashed, with
 * its path, or undefined. JSON data: null, booleans, finite numbers, storable text, arrays of JSON
 * data, and plain objects (prototype `Object.prototype` or null) of JSON data under storable keys
 * other than `__proto__` (a copy would set the prototype instead of a key, and the stored event
 * would no longer match its hash), at most {@link MAX_JSON_DEPTH} levels deep, without cycles. An
 * object property that is `undefined` is left out, as JSON does; an array item may not be.
 */
export function jsonDataProblem(
  value: unknown,
  path: (string | number)[] = [],
  ancestors: object[] = [],
): { path: (string | number)[]; message: string } | undefined {
  switch (typeof value) {
    case 'string':
      return isStorableText(value) ? undefined : { path, message: `text ${TEXT_RULE}` };
    case 'number':
      return Number.isFinite(value)
        ? undefined
        : { path, message: `${value} is not JSON data: numbers must be finite` };
    case 'boolean':
      return undefined;
    case 'object':
      if (value === null) return undefined;
      break;
    default:
      return { path, message: `a ${typeof value} is not JSON data` };
  }
  if (ancestors.includes(value)) return { path, message: 'a value that contains itself is not JSON data' };
  if (ancestors.length >= MAX_JSON_DEPTH) {
    return { path, message: `JSON data may nest at most ${MAX_JSON_DEPTH} levels deep` };
  }
  ancestors.push(value);
  try {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const p = jsonDataProblem(value[i], [...path, i], ancestors);
        if (p) return p;
      }
      return undefined;
    }
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      const name = (proto as { constructor?: { name?: unknown } })?.constructor?.name;
      return {
        path,
        message: `only plain objects and arrays are JSON data, not ${typeof name === 'string' && name ? `a ${name}` : 'this object'}`,
      };
    }
    for (const key of Object.keys(value)) {
      if (key === '__proto__') return { path: [...path, key], message: 'the key __proto__ is not allowed' };
      if (!isStorableText(key)) return { path: [...path, key], message: `a key ${TEXT_RULE}` };
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined) continue;
      const p = jsonDataProblem(v, [...path, key], ancestors);
      if (p) return p;
    }
    return undefined;
  } finally {
    ancestors.pop();
  }
}

/**
 * A JSON object of host or executor data (claims, target params, usage details, observations):
 * refused with the path of its first value that is not JSON data (see {@link jsonDataProblem}).
 */
export const jsonRecord = () =>
  z.record(str(), z.unknown()).superRefine((value, ctx) => {
    const problem = jsonDataProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path });
  });
