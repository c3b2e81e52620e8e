import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type Executor,
  type GrantlineError,
  MAX_JSON_DEPTH,
  createGrantline,
  isGrantlineError,
  isStorableText,
  jsonDataProblem,
  verifyChain,
} from '../src/index.js';
import { autoPolicy, bot, manualClock, paymentsRequest, setup, sam, olga } from './helpers.js';

/**
 * Values that are not JSON data, or text that canonical JSON cannot hash or PostgreSQL cannot store,
 * are refused where they come in, with `ERR_VALIDATION` and the path. Before, they failed later:
 * an untyped Error from the hashing (a usage record outside policy went unrecorded and unrevoked),
 * or a stored value that differed from the hashed one (a Date, a nested `__proto__`), so the case's
 * own chain read as tampered.
 */

const cyclic = () => {
  const o: Record<string, unknown> = { a: 1 };
  o.self = o;
  return o;
};
const deep = (n: number) => {
  let v: Record<string, unknown> = { leaf: true };
  for (let i = 0; i < n; i++) v = { v };
  return v;
};

async function refused(p: Promise<unknown>) {
  const err = await p.then(
    () => {
      throw new Error('accepted');
    },
    (e: unknown) => e,
  );
  expect(isGrantlineError(err), String(err)).toBe(true);
  expect((err as GrantlineError).code).toBe('ERR_VALIDATION');
  return ((err as GrantlineError).details?.issues ?? []) as { path: (string | number)[]; message: string }[];
}

describe('jsonDataProblem', () => {
  it.each([
    ['NaN', { x: Number.NaN }, ['x']],
    ['Infinity', { x: [1, Number.POSITIVE_INFINITY] }, ['x', 1]],
    ['a bigint', { x: 1n }, ['x']],
    ['a function', { x: () => 1 }, ['x']],
    ['a symbol', { x: Symbol('s') }, ['x']],
    ['a Date', { x: new Date(0) }, ['x']],
    ['a Map', { x: new Map() }, ['x']],
    ['a class instance', { x: new (class Thing {})() }, ['x']],
    ['undefined in an array', { x: [1, undefined] }, ['x', 1]],
    ['a cycle', cyclic(), ['self']],
    ['a nested __proto__ key', JSON.parse('{"x":{"__proto__":{"p":1}}}'), ['x', '__proto__']],
    ['a lone surrogate', { x: 'a\ud800' }, ['x']],
    ['a lone low surrogate', { x: '\udc00b' }, ['x']],
    ['U+0000', { x: 'a\u0000b' }, ['x']],
    ['a key with U+0000', { 'a\u0000': 1 }, ['a\u0000']],
    ['nesting deeper than the limit', deep(MAX_JSON_DEPTH + 1), []],
  ])('refuses %s, with its path', (_, value, path) => {
    const p = jsonDataProblem(value);
    expect(p).toBeDefined();
    expect(p!.path.slice(0, path.length)).toEqual(path);
    expect(p!.message.length).toBeGreaterThan(0);
  });

  it('accepts JSON data: shared (not cyclic) references, null prototypes, undefined properties, pairs', () => {
    const shared = { k: 'v' };
    const nullProto = Object.assign(Object.create(null), { a: 1 });
    expect(jsonDataProblem({ a: shared, b: [shared, shared], c: nullProto, d: undefined })).toBeUndefined();
    expect(jsonDataProblem({ emoji: '😀 ok', n: -0, big: 1e21, t: true, z: null })).toBeUndefined();
    expect(jsonDataProblem(deep(MAX_JSON_DEPTH - 1))).toBeUndefined();
    expect(isStorableText('😀')).toBe(true);
    expect(isStorableText('😀'.slice(0, 1))).toBe(false);
  });
});

describe('service inputs that are not JSON data or storable text', () => {
  it.each([
    ['a cyclic target param', { params: { cfg: cyclic() } }, ['targets', 0, 'params', 'cfg', 'self']],
    ['a NaN target param', { params: { n: Number.NaN } }, ['targets', 0, 'params', 'n']],
    ['a Date target param', { params: { at: new Date(0) } }, ['targets', 0, 'params', 'at']],
    ['a function target param', { params: { f: () => 1 } }, ['targets', 0, 'params', 'f']],
    ['a bigint target param', { params: { b: 1n } }, ['targets', 0, 'params', 'b']],
    ['a lone surrogate in a resource', { resource: 'api://payments\ud800' }, ['targets', 0, 'resource']],
  ])('request refuses %s with its path, and writes nothing', async (_, over, path) => {
    const { gl, store } = await setup();
    const req = paymentsRequest();
    const issues = await refused(gl.request({ ...req, targets: [{ ...req.targets[0]!, ...over }] }));
    expect(issues.map((i) => i.path)).toContainEqual(path);
    expect(JSON.parse(store.dump()).rows).toEqual([]);
  });

  it.each([
    [
      'a lone surrogate in the reason',
      { justification: { reason: 'x\ud800', ticket: 'OPS-1' } },
      ['justification', 'reason'],
    ],
    ['U+0000 in a principal id', { requester: { id: 'al\u0000ice', kind: 'human' } }, ['requester', 'id']],
    [
      'a cyclic claim',
      { subject: { id: 'ci', kind: 'workload', claims: { c: cyclic() } } },
      ['subject', 'claims', 'c', 'self'],
    ],
  ])('request refuses %s', async (_, over, path) => {
    const { gl, store } = await setup();
    const issues = await refused(gl.request(paymentsRequest(over)));
    expect(issues.map((i) => i.path)).toContainEqual(path);
    expect(JSON.parse(store.dump()).rows).toEqual([]);
  });

  it('recordUsage refuses a Date or a nested __proto__ in detail and a bad action: the chain stays valid', async () => {
    const { gl } = await setup();
    const g = await gl.request(paymentsRequest());
    await gl.approve(g.id, { approver: sam });
    await gl.approve(g.id, { approver: olga });
    await gl.issue(g.id);
    const before = await gl.history(g.id);
    const usage = { sourceIp: '10.1.2.3', action: 'payments:refund' };
    for (const [bad, path] of [
      [{ detail: { seenAt: new Date() } }, ['detail', 'seenAt']],
      [{ detail: JSON.parse('{"x":{"__proto__":{"p":1}}}') }, ['detail', 'x', '__proto__']],
      [{ detail: { n: Number.NaN } }, ['detail', 'n']],
      [{ action: 'payments:refund\ud800' }, ['action']],
      [{ action: 'payments:refund\u0000' }, ['action']],
    ] as const) {
      const issues = await refused(gl.recordUsage(g.id, { ...usage, ...bad }));
      expect(issues.map((i) => i.path)).toContainEqual(path);
    }
    expect(await gl.history(g.id)).toEqual(before);
    // Usage outside policy with valid data is still recorded and revokes the case.
    const after = await gl.recordUsage(g.id, { sourceIp: '203.0.113.66', action: 'payments:refund' });
    expect(after.state).not.toBe('issued');
    const events = await gl.history(g.id);
    expect(verifyChain(g.id, events).valid).toBe(true);
  });

  it('a policy with a string canonical JSON cannot hash is refused with ERR_VALIDATION', () => {
    const store = createMemoryStore();
    expect(() =>
      createGrantline({ store, executors: [], policy: { ...autoPolicy('p'), owner: 'gov\ud800' } }),
    ).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }));
  });
});

describe('executor answers Grantline cannot record', () => {
  /** An executor whose answers are set per test; the credential's state is kept, as a real system's. */
  function oddSystem() {
    const live = new Set<string>();
    const revokedWith: Record<string, string>[] = [];
    const answer: { issue?: unknown; revoke?: unknown; verify?: unknown; error?: string } = {};
    const executor: Executor<Record<string, unknown>> = {
      system: 'odd',
      paramsSchema: z.record(z.string(), z.unknown()),
      async issue(ctx) {
        live.add(ctx.grant.id);
        return (answer.issue ?? {
          ref: { key: ctx.grant.id },
          expiresAt: new Date(ctx.grant.window.expiresAt!),
        }) as never;
      },
      async revoke(ctx) {
        if (ctx.issuance) revokedWith.push(ctx.issuance.ref);
        if (answer.error) throw new Error(answer.error);
        live.delete(ctx.grant.id);
        return (answer.revoke ?? {}) as never;
      },
      async verify(ctx) {
        return (answer.verify ?? {
          status: live.has(ctx.grant.id) ? 'present' : 'absent',
          method: 'lookup',
          observation: {},
        }) as never;
      },
    };
    const clock = manualClock();
    const gl = createGrantline({
      store: createMemoryStore(),
      policy: autoPolicy('odd'),
      executors: [executor],
      clock,
      random: () => 0.5,
      retry: { baseMs: 1000, maxMs: 1000, maxAttempts: 3 },
    });
    const open = () =>
      gl.request({
        requester: bot,
        subject: bot,
        justification: { reason: 'job' },
        targets: [{ id: 't', system: 'odd', resource: 'db://x', permissions: ['db:read'] }],
        durationSeconds: 60,
        template: 'auto',
      });
    return { gl, clock, answer, live, open, revokedWith };
  }

  it('an issue answer with a ref that is not strings fails the issuance and rolls the case back', async () => {
    const { gl, answer, live, open } = oddSystem();
    const g = await open();
    answer.issue = { ref: { key: 42 }, expiresAt: new Date(Date.now() + 60_000) };
    const err = await gl.issue(g.id).catch((e: unknown) => e);
    expect((err as GrantlineError).code).toBe('ERR_ISSUANCE_FAILED');
    expect((err as GrantlineError).message).toContain('ref.key must be a string');
    const after = await gl.get(g.id);
    expect(after.targets[0]!.issuance).toBeUndefined();
    expect(['verified', 'failed']).toContain(after.state);
    expect(live.size).toBe(0); // the rollback removed what the executor made
    expect(verifyChain(g.id, await gl.history(g.id)).valid).toBe(true);
  });

  it('an issue answer with an invalid Date fails the issuance; its sound refs are kept, so the rollback removes by them', async () => {
    const { gl, answer, open, revokedWith } = oddSystem();
    const g = await open();
    answer.issue = { ref: { key: 'k-1' }, expiresAt: new Date(Number.NaN) };
    const err = await gl.issue(g.id).catch((e: unknown) => e);
    expect((err as GrantlineError).message).toContain('expiresAt must be a valid Date');
    const after = await gl.get(g.id);
    expect(after.targets[0]!.issuance?.ref).toEqual({ key: 'k-1' });
    expect(revokedWith).toContainEqual({ key: 'k-1' }); // the rollback's revoke had the refs
    expect(verifyChain(g.id, await gl.history(g.id)).valid).toBe(true);
  });

  it('a verify observation that is not JSON data is a recorded failure the sweeper retries, not a stuck case', async () => {
    const { gl, clock, answer, open } = oddSystem();
    const g = await open();
    await gl.issue(g.id);
    answer.verify = { status: 'absent', method: 'lookup', observation: { at: new Date() } };
    const revoked = await gl.revoke(g.id, { actor: bot, reason: 'done' });
    expect(revoked.state).toBe('revoked');
    const v = revoked.targets[0]!.verification!;
    expect(v.result).toBeUndefined();
    expect(v.lastError).toMatchObject({ code: 'ERR_EXECUTOR', retryable: false });
    expect(v.lastError!.message).toContain('observation.at');
    // A fixed executor: the sweeper finishes the case.
    answer.verify = undefined;
    clock.advance(5_000);
    await gl.sweep();
    const done = await gl.get(g.id);
    expect(['verified', 'failed']).toContain(done.state);
    expect(verifyChain(g.id, await gl.history(g.id)).valid).toBe(true);
  });

  it('a revoke detail that is not JSON data is a recorded failure', async () => {
    const { gl, answer, open } = oddSystem();
    const g = await open();
    await gl.issue(g.id);
    answer.revoke = { detail: { n: Number.NaN } };
    const after = await gl.revoke(g.id, { actor: bot, reason: 'done' });
    const r = after.targets[0]!.revocation!;
    expect(r.confirmedAt).toBeUndefined();
    expect(r.lastError).toMatchObject({ code: 'ERR_EXECUTOR', retryable: false });
    expect(r.lastError!.message).toContain('detail.n');
    expect(verifyChain(g.id, await gl.history(g.id)).valid).toBe(true);
  });

  it('an executor error message with U+0000 and a lone surrogate is recorded with U+FFFD in their place', async () => {
    const { gl, answer, open } = oddSystem();
    const g = await open();
    await gl.issue(g.id);
    answer.error = 'upstream said a\u0000b\ud800c';
    const after = await gl.revoke(g.id, { actor: bot, reason: 'done' });
    expect(after.targets[0]!.revocation!.lastError!.message).toContain('a\ufffdb\ufffdc');
    expect(verifyChain(g.id, await gl.history(g.id)).valid).toBe(true);
  });
});
