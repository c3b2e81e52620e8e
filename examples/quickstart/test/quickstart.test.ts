import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dir = new URL('..', import.meta.url).pathname;

describe('the quickstart (pnpm demo)', () => {
  it('runs every case to the state the README promises and prints their timelines', () => {
    const evidenceDir = mkdtempSync(join(tmpdir(), 'grantline-quickstart-'));
    const out = execFileSync('pnpm', ['exec', 'tsx', '--conditions', 'source', 'src/main.ts'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, GRANTLINE_EVIDENCE_DIR: evidenceDir },
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
    // Case 1's signed evidence and the public JWKS, with the command an auditor runs (the CLI's
    // test verifies these files with the real CLI).
    const bundle = join(evidenceDir, 'case-1.json');
    const keys = join(evidenceDir, 'keys.json');
    expect(out).toContain(`grantline verify ${bundle} --jwks ${keys}`);
    expect(Object.keys(JSON.parse(readFileSync(bundle, 'utf8'))).sort()).toEqual([
      'payload',
      'protected',
      'signature',
    ]);
    const jwks = JSON.parse(readFileSync(keys, 'utf8'));
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).not.toHaveProperty('d');
    rmSync(evidenceDir, { recursive: true, force: true });
  }, 90_000);
});
