import { z } from 'zod';
import type { Executor, Grantline } from '../src/index.js';

// The fixture of the service path tests (every-path-scenarios.ts, frozen-records.test.ts): its people,
// the configurable `fx` executor, and a way to hold an issuance in it.

const human = (id: string, roles: string[], teams: string[] = ['t']) => ({
  id,
  kind: 'human' as const,
  roles,
  teams,
});
/** Developer and on-call (may use break-glass): the usual requester. */
export const alice = human('alice', ['dev', 'oncall'], ['app']);
/** Owner: the approver. */
export const olga = human('olga', ['owner'], ['biz']);
/** Security: the break-glass reviewer. */
export const sam = human('sam', ['security'], ['sec']);

/**
 * The `fx` executor of the service path tests, configured per test through `behaviour`: issuance
 * held at `gate` or failing per target, a number of failing revokes, of verifier errors and of
 * "still present" verifications, and renewal. `onCall` sees every context it is handed.
 */
export function fx(onCall: (ctx: unknown) => void = () => {}) {
  const behaviour = {
    failIssue: new Set<string>(),
    revokeFailures: 0,
    verifyPresent: 0,
    verifyErrors: 0,
    gate: undefined as Promise<void> | undefined,
    /** Calls of `issue` that reached the executor (held there while `gate` is set). */
    issueCalls: 0,
  };
  const exec: Executor<{ mode: string }> = {
    system: 'fx',
    paramsSchema: z.object({ mode: z.string().default('ok') }),
    async issue(ctx) {
      onCall(ctx);
      behaviour.issueCalls++;
      if (behaviour.gate) await behaviour.gate;
      if (behaviour.failIssue.has(ctx.target.id)) throw new Error(`boom ${ctx.target.id}`);
      return {
        ref: { id: `${ctx.grant.id}/${ctx.target.id}` },
        expiresAt: new Date(ctx.now.getTime() + 1_800_000),
        secret: { s: `secret-${ctx.target.id}-0123456789` },
      };
    },
    async revoke(ctx) {
      onCall(ctx);
      if (behaviour.revokeFailures > 0) {
        behaviour.revokeFailures--;
        throw new Error('revoke down');
      }
      return { detail: { gone: ctx.target.id } };
    },
    async verify(ctx) {
      onCall(ctx);
      if (behaviour.verifyErrors > 0) {
        behaviour.verifyErrors--;
        throw new Error('verifier down');
      }
      if (behaviour.verifyPresent > 0) {
        behaviour.verifyPresent--;
        return { status: 'present', method: 'probe', observation: { still: true } };
      }
      return { status: 'absent', method: 'probe', observation: { at: ctx.now.toISOString() } };
    },
    async renew(ctx) {
      onCall(ctx);
      return { expiresAt: ctx.expiresAt, secret: { s: 'renewed-0123456789' } };
    },
  };
  return { exec, behaviour };
}

/**
 * Starts `gl.issue(id)` in the background and holds it in the executor (`gate`) until `release()`.
 * Resolves once the issuance has reached the executor, the case being `issuing` in the store (one
 * `setImmediate` is enough on the memory store, not on one with real round trips, PostgreSQL).
 * `issuing` settles with the outcome, or the error, of the issue call.
 */
export async function holdIssue(
  gl: Grantline,
  behaviour: ReturnType<typeof fx>['behaviour'],
  id: string,
): Promise<{ issuing: Promise<unknown>; release(): void }> {
  let open!: () => void;
  behaviour.gate = new Promise<void>((r) => {
    open = r;
  });
  const calls = behaviour.issueCalls;
  const issuing = gl.issue(id).catch((x: unknown) => x);
  for (let i = 0; behaviour.issueCalls === calls; i++) {
    if (i > 5_000) throw new Error('the issuance never reached the executor');
    await new Promise((r) => setTimeout(r, 1));
  }
  return {
    issuing,
    release() {
      behaviour.gate = undefined;
      open();
    },
  };
}
