import type { Grant, Grantline } from '@grantline/core';

/** What the host's metrics library offers; Prometheus, OpenTelemetry and StatsD clients all fit. */
export interface Metrics {
  histogram(name: string, value: number, labels: Record<string, string>): void;
  counter(name: string, labels: Record<string, string>): void;
}

/** Pages a person (on-call, the policy owner). */
export type Alert = (title: string, facts: Record<string, unknown>) => void;

/**
 * Wires one instance's events to metrics and alerts. Every instance needs it: an event is emitted
 * only by the instance whose transition committed it, so sum the metrics across instances.
 */
export function watchGrantline(grantline: Grantline, metrics: Metrics, alert: Alert): void {
  grantline.on('grant:revoked', ({ trigger, lagMs }) =>
    metrics.histogram('grantline_revocation_lag_ms', Number(lagMs), { trigger: String(trigger) }),
  );
  grantline.on('grant:verified', ({ grant, lagMs }) =>
    metrics.histogram('grantline_verification_lag_ms', Number(lagMs), {
      trigger: grant.revocation?.trigger ?? 'unknown',
    }),
  );
  grantline.on('policy:violation', () => metrics.counter('grantline_violations_total', {}));
  // Exposed: revocation or verification gave up after `retry.maxAttempts` (or a non-retryable error).
  // Grantline keeps retrying at the capped backoff, but access may still be live: a person must look.
  grantline.on('revocation:failed', ({ caseId, targetId, error }) => {
    metrics.counter('grantline_exposed_total', { stage: 'revocation' });
    alert('Revocation failed: access may still be live', { caseId, targetId, error });
  });
  grantline.on('verification:failed', ({ caseId, targetId, present }) => {
    metrics.counter('grantline_exposed_total', { stage: 'verification' });
    alert('Removal could not be verified', { caseId, targetId, stillPresent: present });
  });
  grantline.on('review:overdue', ({ caseId, actorId, reviewDueAt }) =>
    alert('Break-glass use not reviewed in time', { caseId, actorId, reviewDueAt }),
  );
}

/**
 * The cases flagged exposed right now, read from the store: the durable counterpart of the events
 * above (an event is lost if its process dies right after the commit; the flag is not). Export the
 * count as a gauge; it should be zero.
 */
export async function exposedCases(grantline: Grantline): Promise<Grant[]> {
  const exposed: Grant[] = [];
  let cursor: string | undefined;
  do {
    const page = await grantline.list({ states: ['revoking', 'revoked'], limit: 500, cursor });
    exposed.push(...page.grants.filter((g) => g.revocation?.exposed));
    cursor = page.nextCursor;
  } while (cursor);
  return exposed;
}

/** The last day's figures from the period report: what to put on a dashboard or in a daily mail. */
export async function lastDay(grantline: Grantline, now = new Date()) {
  const report = await grantline.report({ from: new Date(now.getTime() - 86_400_000), to: now });
  return {
    revocationLagP99Ms: report.latency.revocation.p99,
    verificationLagP99Ms: report.latency.verification.p99,
    gaps: report.findings.filter((f) => f.kind === 'gap').map((f) => ({ code: f.code, count: f.count })),
  };
}
