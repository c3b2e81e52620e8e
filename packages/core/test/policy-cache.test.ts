import { describe, expect, it } from 'vitest';
import { checkUsage, compilePolicy, evaluateRequest } from '../src/index.js';

const at = new Date('2026-12-01T10:00:00.000Z');
const allowed = (cidrs: string[], ip: string) =>
  checkUsage({ sourceCidrs: cidrs }, { sourceIp: ip, action: 'x', at }).allowed;

describe('compiled policy text is reused, never mixed up', () => {
  it('checks each CIDR list on its own, alternating lists', () => {
    for (let i = 0; i < 3; i++) {
      expect(allowed(['10.0.0.0/8'], '10.1.2.3')).toBe(true);
      expect(allowed(['192.168.0.0/16'], '10.1.2.3')).toBe(false);
      expect(allowed(['192.168.0.0/16', '10.0.0.0/8'], '10.1.2.3')).toBe(true);
      expect(allowed(['2001:db8::/32'], '2001:db8::1')).toBe(true);
    }
  });

  it('does not split a malformed entry into valid ones (the list is keyed exactly)', () => {
    // One invalid entry (a comma inside): it admits nothing, as it did before any caching.
    expect(allowed(['10.0.0.0/8,192.168.0.0/16'], '192.168.1.1')).toBe(false);
    expect(allowed(['10.0.0.0/8,192.168.0.0/16'], '10.1.2.3')).toBe(false);
    expect(allowed(['10.0.0.0/8', '192.168.0.0/16'], '192.168.1.1')).toBe(true);
  });

  it('matches globs and reference patterns correctly past the memo bound (1,000 texts)', () => {
    for (let i = 0; i < 1100; i++) {
      const compiled = compilePolicy({
        id: `p${i}`,
        version: '1',
        owner: 'gov',
        rules: [
          {
            id: 'r',
            risk: 'medium',
            match: { systems: ['token'], resources: [`api://svc-${i}-*`] },
            operator: 'ops',
            maxDurationSeconds: 3600,
            require: { ticket: { pattern: `^T${i}-\\d+$` } },
            approvals: { count: 1, roles: ['owner'] },
          },
        ],
      });
      const facts = (resource: string, ticket: string) => ({
        requester: { id: 'req', kind: 'human' as const, roles: [], teams: [] },
        subject: { id: 'svc', kind: 'workload' as const, roles: [], teams: [] },
        justification: { reason: 'r', ticket },
        targets: [{ id: 't', system: 'token', resource }],
        durationSeconds: 60,
      });
      expect(evaluateRequest(compiled, facts(`api://svc-${i}-a`, `T${i}-1`)).allowed).toBe(true);
      expect(evaluateRequest(compiled, facts(`api://svc-${i + 1}-a`, `T${i}-1`)).allowed).toBe(false);
      expect(evaluateRequest(compiled, facts(`api://svc-${i}-a`, `T${i + 1}-1`)).reasons[0]?.code).toBe(
        'TICKET_PATTERN',
      );
    }
  });
});
