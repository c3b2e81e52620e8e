import assert from 'node:assert/strict';
import { type GrantStore, createGrantline } from '@grantline/core';
import { describe, it } from 'vitest';
import { createCountingExecutor, testPolicy } from './fixtures/grantline.js';

/** Strings an attacker would try in any text field: SQL, JSON, escapes, placeholders, Unicode. */
export const PAYLOADS = [
  "'; DROP TABLE grants; --",
  "Robert'); DROP TABLE audit_events;--",
  '" OR "1"="1',
  "' OR 1=1 --",
  "'; SELECT pg_sleep(5); --",
  '$1 $2 $$ $tag$ body $tag$',
  "E'\\x41' \\' \\\\ \\n",
  '%_ LIKE wildcards _%',
  '/* comment */ -- line',
  '{"state":"verified","id":"forged"}',
  "') ON CONFLICT DO NOTHING; NOTIFY grantline; --",
  'line\nbreak\ttab\r\u2028\u2029',
  'RTL \u202e evil 𝕏 emoji 🚀 zero\u200bwidth',
  "'::jsonb || '{\"x\":1}'",
];

/** Runs a request through the service with a payload in every free-text field and reads it back. */
export function describeInjection(
  name: string,
  setup: () => Promise<{ store: GrantStore; tableCount(): Promise<number>; done(): Promise<void> } | null>,
): void {
  describe(`${name}: SQL injection attempts are stored and returned verbatim`, () => {
    it('in every text field of a case, its events, list filters and idempotency keys', async (ctx) => {
      const env = await setup();
      if (!env) return ctx.skip();
      try {
        const tablesBefore = await env.tableCount();
        const gl = createGrantline({
          store: env.store,
          // The template names each hostile resource and permission it covers (a glob matches itself).
          policy: {
            ...testPolicy,
            rules: testPolicy.rules.map((r) => ({
              ...r,
              match: {
                systems: ['count'],
                resources: PAYLOADS,
                permissions: PAYLOADS.flatMap((p) => [p, `${p}:2`]),
              },
            })),
          },
          executors: [createCountingExecutor()],
        });
        for (const [i, p] of PAYLOADS.entries()) {
          // Principal ids and team names may not hold control, format or default-ignorable characters
          // (nor end in whitespace): the payload goes in with those replaced, verbatim everywhere else.
          const visible = p.replace(/[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/gu, '?');
          const pid = (kind: string) => `${kind}:${visible}:${i}`;
          const principal = (kind: 'human' | 'workload') => ({
            id: pid(kind),
            kind,
            roles: ['dev', p],
            teams: [`team:${visible}:${i}`],
            claims: { note: p, [p]: p },
          });
          const input = {
            requester: principal('human'),
            subject: principal('workload'),
            justification: { reason: p, ticket: p, changeRecord: p, workload: p },
            targets: [{ id: `t${i}`, system: 'count', resource: p, permissions: [p, `${p}:2`] }],
            durationSeconds: 600,
            template: 'auto',
            idempotencyKey: `key:${p}`,
          };
          const g = await gl.request(input);
          assert.deepEqual(g.requester, { ...principal('human') });
          await gl.issue(g.id);
          await gl.revoke(g.id, { actor: principal('human'), reason: p });
          const back = await gl.get(g.id);
          assert.equal(back.requester.id, pid('human'));
          assert.equal(back.subject.id, pid('workload'));
          assert.deepEqual(back.requester.claims, { note: p, [p]: p });
          assert.deepEqual(back.justification, { reason: p, ticket: p, changeRecord: p, workload: p });
          assert.equal(back.targets[0]!.resource, p);
          assert.deepEqual(back.targets[0]!.permissions, [p, `${p}:2`]);
          assert.equal(back.revocation?.reason, p);
          assert.equal(back.idempotencyKey, `key:${p}`);
          // Repeating the request with the same key returns the same case (the key matched verbatim).
          assert.equal((await gl.request(input)).id, g.id);
          assert.equal((await env.store.findByIdempotencyKey(`key:${p}`))?.id, g.id);
          // Filters with the payload find exactly this case.
          const bySubject = await env.store.list({ subjectId: pid('workload'), limit: 10 });
          assert.deepEqual(
            bySubject.grants.map((x) => x.id),
            [g.id],
          );
          const byRequester = await env.store.list({ requesterId: pid('human'), limit: 10 });
          assert.deepEqual(
            byRequester.grants.map((x) => x.id),
            [g.id],
          );
          const events = await gl.history(g.id);
          const requested = events.find((e) => e.type === 'requested')!;
          assert.deepEqual((requested.data as { justification: unknown }).justification, {
            reason: p,
            ticket: p,
            changeRecord: p,
            workload: p,
          });
          assert.equal(events.find((e) => e.type === 'revoke.requested')?.data.reason, p);
          assert.ok((await gl.checkChain(g.id)).valid, 'hash chain intact after the round trip');
        }
        assert.equal(await env.tableCount(), tablesBefore, 'no table was dropped or created');
        assert.equal((await env.store.list({ limit: 1000 })).grants.length, PAYLOADS.length);
      } finally {
        await env.done();
      }
    }, 60_000);
  });
}
