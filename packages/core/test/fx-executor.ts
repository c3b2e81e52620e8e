import { z } from 'zod';
import type { Executor } from '../src/index.js';

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
