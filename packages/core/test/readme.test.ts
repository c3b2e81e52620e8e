import { readFileSync } from 'node:fs';
import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { docSections, renderReadme } from '../../../scripts/readme-sections.js';
import * as core from '../src/index.js';
import {
  type Executor,
  GrantlineError,
  type PolicyInput,
  createGrantline,
  createTokenAuthority,
} from '../src/index.js';
import * as testing from '../src/testing/index.js';
import { alice, ciJob, manualClock, olga, paymentsRequest, policy, rita, sam } from './helpers.js';

const root = new URL('../../..', import.meta.url).pathname;
const readme = readFileSync(`${root}/packages/core/README.md`, 'utf8');

/** The body of the `## title` section of the README. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  expect(start, `README has a "## ${title}" section`).toBeGreaterThan(-1);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

/** The backticked names in the first column of every table row of a section. */
function firstColumnNames(text: string): string[] {
  return [...text.matchAll(/^\| ([^|]+) \|/gm)].flatMap((m) =>
    [...m[1]!.matchAll(/`([^`]+)`/g)].map((n) => n[1]!),
  );
}

describe('the @grantline/core README and docs stay true', () => {
  it('generated sections are current (run `pnpm readme` to update)', () => {
    for (const [rel, sections] of Object.entries(docSections(root))) {
      const text = readFileSync(`${root}/${rel}`, 'utf8');
      expect(renderReadme(text, sections), rel).toBe(text);
    }
  });

  it('"Other exports" names every runtime export and nothing else', () => {
    const names = new Set(firstColumnNames(section('Other exports')));
    const exported = [...Object.keys(core), ...Object.keys(testing)];
    for (const n of names) {
      if (n.startsWith('@grantline/') || n.includes('…')) continue;
      expect(exported, `${n} is named in the README`).toContain(n);
    }
    for (const e of exported) {
      if (e.endsWith('Schema') && !names.has(e)) continue; // listed as a group
      expect([...names], `export ${e} is missing from the README`).toContain(e);
    }
  });

  it('"Audit events" lists exactly the event types that cases on every path record', async () => {
    const clock = manualClock();
    const store = createMemoryStore();
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    const box = boxSystem();
    const docsPolicy: PolicyInput = {
      ...policy,
      rules: [
        ...policy.rules.map((r) =>
          r.id === 'payments-write' ? { ...r, extension: { requiresApproval: true, maxExtensions: 1 } } : r,
        ),
        {
          id: 'boxes',
          risk: 'low',
          template: 'box',
          match: { systems: ['box'], resources: ['box://*'], permissions: ['box:use'] },
          operator: 'platform-ops',
          maxDurationSeconds: 3600,
          approvals: { count: 0, roles: [] },
        },
      ],
    };
    const gl = createGrantline({
      store,
      policy: docsPolicy,
      executors: [tokens.executor, box.executor],
      clock,
      random: () => 0.5,
      retry: { baseMs: 1_000, maxMs: 1_000, maxAttempts: 2 },
    });
    const sweepUntil = async (id: string, state: string) => {
      for (let i = 0; i < 20 && (await gl.get(id)).state !== state; i++) {
        clock.advance(1_500);
        await gl.sweep();
      }
      expect((await gl.get(id)).state).toBe(state);
    };

    // Approvals, issuance, an extension, a use, a violating use: revoked and verified.
    const a = await gl.request(paymentsRequest());
    await gl.approve(a.id, { approver: sam });
    await gl.approve(a.id, { approver: olga });
    await gl.issue(a.id);
    await gl.extend(a.id, {
      actor: ciJob,
      seconds: 600,
      reason: 'slower than planned',
      approvals: [{ approver: sam }, { approver: olga }],
    });
    await gl.recordUsage(a.id, { sourceIp: '10.1.2.3', action: 'payments:write' });
    await gl.recordUsage(a.id, { sourceIp: '192.0.2.7', action: 'payments:write' });
    expect((await gl.get(a.id)).state).toBe('verified');

    // Denied, cancelled, expired.
    const b = await gl.request(paymentsRequest());
    await gl.deny(b.id, { actor: sam, reason: 'not now' });
    const c = await gl.request(paymentsRequest());
    await gl.cancel(c.id, { actor: alice, reason: 'not needed' });
    const d = await gl.request(paymentsRequest());
    clock.advance(25 * 3_600_000);
    await gl.sweep();
    expect((await gl.get(d.id)).state).toBe('expired');

    // Break-glass: its review becomes overdue, then is recorded.
    const e = await gl.breakGlass({
      requester: rita,
      subject: ciJob,
      justification: { reason: 'payments outage' },
      targets: [{ id: 'payments', system: 'token', resource: 'api://payments' }],
      durationSeconds: 600,
    });
    clock.advance(86_400_000 + 1_000);
    await gl.sweep();
    await gl.review(e.id, { reviewer: sam, outcome: 'accepted' });

    // A revoke that fails once and a verify that first sees the access still present.
    const box1 = await gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'box work' },
      targets: [{ id: 'box', system: 'box', resource: 'box://1', permissions: ['box:use'] }],
      durationSeconds: 600,
      template: 'box',
    });
    await gl.issue(box1.id);
    box.failRevokes = 1;
    box.lingerVerifies = 1;
    expect((await gl.complete(box1.id, { actor: ciJob, reason: 'done' })).state).toBe('revoking');
    await sweepUntil(box1.id, 'verified');

    // An issue that fails: rolled back, and the case ends failed.
    box.failIssue = true;
    const box2 = await gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'box work' },
      targets: [{ id: 'box', system: 'box', resource: 'box://2', permissions: ['box:use'] }],
      durationSeconds: 600,
      template: 'box',
    });
    await expect(gl.issue(box2.id)).rejects.toMatchObject({ code: 'ERR_ISSUANCE_FAILED' });
    await sweepUntil(box2.id, 'failed');

    const recorded = new Set((await store.allEvents(0, 100_000)).map((ev) => ev.type));
    const documented = firstColumnNames(section('Audit events'));
    expect(new Set(documented).size, 'no type is listed twice').toBe(documented.length);
    expect([...recorded].sort()).toEqual([...documented].sort());
  });
});

/** A stand-in credential system with real state that can fail issue, fail revokes and lag deletes. */
function boxSystem() {
  const live = new Set<string>();
  const state = {
    failIssue: false,
    failRevokes: 0,
    lingerVerifies: 0,
    executor: undefined as unknown as Executor<Record<string, unknown>>,
  };
  const key = (ctx: { grant: { id: string }; target: { id: string } }) => `${ctx.grant.id}:${ctx.target.id}`;
  state.executor = {
    system: 'box',
    paramsSchema: z.record(z.string(), z.unknown()),
    async issue(ctx) {
      if (state.failIssue)
        throw new GrantlineError('ERR_EXECUTOR', 'box: quota exceeded', { retryable: false });
      live.add(key(ctx));
      return { ref: { box: key(ctx) }, expiresAt: new Date(ctx.grant.window.expiresAt!) };
    },
    async revoke(ctx) {
      if (state.failRevokes > 0) {
        state.failRevokes--;
        throw new GrantlineError('ERR_EXECUTOR', 'box: timed out', { retryable: true });
      }
      return { alreadyGone: !live.delete(key(ctx)) };
    },
    async verify(ctx) {
      const present = live.has(key(ctx)) || state.lingerVerifies-- > 0;
      return {
        status: present ? 'present' : 'absent',
        method: 'box lookup',
        observation: { box: key(ctx), present },
      };
    },
  };
  return state;
}
