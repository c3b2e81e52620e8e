import type { Grant, Target } from '@grantline/core';
import { makeGrant } from '@grantline/core/testing';

/** An issued case with one AWS target and a window of `seconds` from `start`. */
export function awsCase(
  target: Omit<Target, 'system'> & { system?: string },
  opts: { start?: Date; seconds?: number; sourceCidrs?: string[]; subjectId?: string; ticket?: string } = {},
): Grant {
  const { grant } = makeGrant({ state: 'issuing', ...(opts.subjectId ? { subjectId: opts.subjectId } : {}) });
  const start = opts.start ?? new Date();
  const seconds = opts.seconds ?? 1800;
  return {
    ...grant,
    justification: { ...grant.justification, ...(opts.ticket !== undefined ? { ticket: opts.ticket } : {}) },
    targets: [{ system: 'aws', ...target }],
    window: {
      ...grant.window,
      durationSeconds: seconds,
      issuedAt: start.toISOString(),
      expiresAt: new Date(start.getTime() + seconds * 1000).toISOString(),
    },
    policy: {
      ...grant.policy,
      ...(opts.sourceCidrs ? { constraints: { sourceCidrs: opts.sourceCidrs } } : {}),
    },
  };
}

/** Executor context for the case's first target, with params parsed by `schema`. */
export function ctxOf<P>(
  grant: Grant,
  parse: (v: unknown) => P,
  now = new Date(Date.parse(grant.window.issuedAt!)),
) {
  const t = grant.targets[0]!;
  return { grant, target: { ...t, params: parse(t.params ?? {}) }, now };
}
