import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const dir = new URL('..', import.meta.url).pathname;

describe('the quickstart (pnpm demo)', () => {
  it('runs every case to the state the README promises and prints their timelines', () => {
    const out = execFileSync('pnpm', ['exec', 'tsx', '--conditions', 'source', 'src/main.ts'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(out).toMatch(/self-approval refused: ERR_APPROVAL_REFUSED .*SELF_APPROVAL_REQUESTER/);
    expect(out).toContain('after completion the same token is rejected (revoked)');
    expect(out).toMatch(/Case 1 — dual control, completion: case \S+ is verified/);
    expect(out).toMatch(/Case 2 — policy violation: case \S+ is verified/);
    expect(out).toMatch(/│ violation\s+│ grantline \(system\)\s+│\s+│ SOURCE_NOT_ALLOWED/);
    expect(out).toMatch(
      /Case 3 — pre-approved template, expired and verified \d+ ms after its window: case \S+ is verified/,
    );
    expect(out).toMatch(/│ approved\s+│ policy:template:read-metrics \(system\)/);
    expect(out).toMatch(/Case 4 — break-glass, review due \S+: case \S+ is issued/);
    expect(out).toContain('│ breakglass.used');
    expect(out).toMatch(/│ approval\s+│ sam \(human\)\s+│ security-officer/);
    expect(out).toMatch(/│ approval\s+│ olga \(human\)\s+│ service-owner/);
    expect(out).toContain('audit chains valid: true');
  }, 90_000);
});
