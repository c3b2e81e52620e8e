import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type PolicyInput,
  createGrantline,
  createTokenAuthority,
  foldIdentity,
  isGrantlineError,
  sameIdentity,
} from '../src/index.js';
import { createMemoryStore } from '@grantline/store-memory';
import { manualClock, policy, rita, sam, setup } from './helpers.js';

// Principal ids are compared folded (foldIdentity: NFKC, lower/upper/lower case, NFKC) wherever the
// same person is refused, and ids that only differ by invisible characters or edge whitespace are
// refused outright.

async function refusal(p: Promise<unknown>): Promise<{ code: string; reasons: string[]; paths: unknown[] }> {
  try {
    await p;
  } catch (err) {
    if (!isGrantlineError(err)) throw err;
    const reasons = ((err.details.reasons as { code: string }[] | undefined) ?? []).map((r) => r.code);
    // Distinct paths of the validation issues (one field may break more than one check).
    const paths = [
      ...new Set(
        ((err.details.issues as { path: unknown }[] | undefined) ?? []).map((i) => JSON.stringify(i.path)),
      ),
    ].map((x) => JSON.parse(x) as unknown);
    return { code: err.code, reasons, paths };
  }
  throw new Error('expected a rejection');
}

const owner = { id: 'olga', kind: 'human' as const, roles: ['service-owner'] };
const other = (requester: { id: string; kind: 'human'; roles: string[] }) => ({
  requester,
  subject: { id: 'ci:x', kind: 'workload' as const },
  justification: { reason: 'r' },
  targets: [{ id: 't', system: 'token', resource: 'api://other' }],
  durationSeconds: 60,
});

describe('principal ids', () => {
  it('an id with edge whitespace or a control, format or default-ignorable character is refused with ERR_VALIDATION', async () => {
    const { gl, store } = await setup();
    const before = store.dump();
    for (const bad of [
      'olga ',
      ' olga',
      'olga\u200b',
      'ol\u200dga',
      'olga\u0000',
      'ol\nga',
      '\ufeffolga',
      'olga\u202e',
      'olga\u00a0',
      // Default-ignorable code points that are not Cc/Cf: combining grapheme joiner, variation
      // selectors, Mongolian free variation selector, Hangul fillers.
      'olga\u034f',
      'olga\ufe00',
      'olga\ufe0f',
      'olga\u180b',
      'ol\u3164ga',
      '\u115folga',
      'ol\u1160ga',
      'olga\u{e0100}',
    ]) {
      expect(await refusal(gl.request(other({ ...owner, id: bad })))).toMatchObject({
        code: 'ERR_VALIDATION',
        paths: [['requester', 'id']],
      });
    }
    expect(store.dump()).toBe(before);
    const g = await gl.request(other(owner));
    expect(await refusal(gl.approve(g.id, { approver: { ...owner, id: 'olga\u200b' } }))).toMatchObject({
      code: 'ERR_VALIDATION',
      paths: [['approver', 'id']],
    });
    // A valid id is stored as given (not folded).
    expect((await gl.request(other({ ...owner, id: 'Olga' }))).requester.id).toBe('Olga');
  });

  it('self-approval is refused for an id that folds equal: case, NFD, compatibility forms', async () => {
    const { gl } = await setup();
    for (const [requester, approver] of [
      ['olga', 'Olga'],
      ['olga', 'OLGA'],
      ['Jos\u00e9', 'Jose\u0301'],
      ['Jose\u0301', 'JOS\u00c9'],
      ['olga', '\uff4f\uff4c\uff47\uff41'], // fullwidth
      // Full case folding, which toLowerCase alone misses.
      ['wei\u00df', 'WEISS'],
      ['weiss', 'WEI\u1e9e'],
      ['\u03bf\u03b4\u03bf\u03c2', '\u03bf\u03b4\u03bf\u03c3'], // final sigma
      ['\u0131lker', 'ILKER'], // dotless i
    ] as const) {
      const g = await gl.request(other({ ...owner, id: requester }));
      expect(await refusal(gl.approve(g.id, { approver: { ...owner, id: approver } }))).toMatchObject({
        code: 'ERR_APPROVAL_REFUSED',
        reasons: ['SELF_APPROVAL_REQUESTER'],
      });
      expect((await gl.get(g.id)).approvals).toEqual([]);
    }
  });

  it('one person approving twice under two spellings is a duplicate, and counts once', async () => {
    const twoOwners: PolicyInput = {
      ...policy,
      rules: [
        {
          id: 'two-owners',
          risk: 'medium',
          match: { systems: ['token'], resources: ['api://*'] },
          operator: 'platform-ops',
          maxDurationSeconds: 3600,
          approvals: { count: 2, roles: ['service-owner'] },
        },
      ],
    };
    const clock = manualClock();
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    const gl = createGrantline({
      store: createMemoryStore(),
      policy: twoOwners,
      executors: [tokens.executor],
      clock,
    });
    const g = await gl.request(other({ id: 'alice', kind: 'human', roles: [] }));
    await gl.approve(g.id, { approver: owner });
    expect(await refusal(gl.approve(g.id, { approver: { ...owner, id: 'OLGA' } }))).toMatchObject({
      code: 'ERR_APPROVAL_REFUSED',
      reasons: ['DUPLICATE_APPROVER'],
    });
    // Invisible characters that are not control or format characters do not make a second person.
    for (const spelled of ['olga\u034f', 'olga\ufe0f', 'ol\u3164ga', 'olga\u180b']) {
      expect(await refusal(gl.approve(g.id, { approver: { ...owner, id: spelled } }))).toMatchObject({
        code: 'ERR_VALIDATION',
        paths: [['approver', 'id']],
      });
    }
    expect((await gl.get(g.id)).state).toBe('requested');
    // Nor does a variation selector let the requester approve their own case.
    const own = await gl.request(other({ ...owner, id: 'alice' }));
    expect(await refusal(gl.approve(own.id, { approver: { ...owner, id: 'alice\ufe0f' } }))).toMatchObject({
      code: 'ERR_VALIDATION',
      paths: [['approver', 'id']],
    });
    expect((await gl.get(own.id)).approvals).toEqual([]);
  });

  it('a member of the operator team under another spelling of its name may not approve', async () => {
    const { gl } = await setup();
    const g = await gl.request(other({ id: 'alice', kind: 'human', roles: [] }));
    // The 'standard' rule's operator team is 'platform-ops'; an IdP group may be spelled otherwise.
    expect(
      await refusal(gl.approve(g.id, { approver: { ...owner, teams: ['Platform-Ops'] } })),
    ).toMatchObject({ code: 'ERR_APPROVAL_REFUSED', reasons: ['OPERATOR_TEAM_APPROVAL'] });
    expect((await gl.get(g.id)).approvals).toEqual([]);
  });

  it('a team name with an invisible character is refused, so the operator team cannot be spelled past', async () => {
    const { gl } = await setup();
    const g = await gl.request(other({ id: 'alice', kind: 'human', roles: [] }));
    for (const team of ['platform-ops\u200b', 'platform-ops\u034f', 'platform\u00ad-ops', ' platform-ops']) {
      expect(await refusal(gl.approve(g.id, { approver: { ...owner, teams: [team] } }))).toEqual({
        code: 'ERR_VALIDATION',
        reasons: [],
        paths: [['approver', 'teams', 0]],
      });
    }
    const after = await gl.get(g.id);
    expect([after.approvals, after.version]).toEqual([[], g.version]);
    // And a policy cannot name such an operator team either.
    const tokens = await createTokenAuthority({ issuer: 'x' });
    const bad: PolicyInput = {
      ...policy,
      rules: policy.rules.map((r) => ({ ...r, operator: 'platform-ops\u2060' })),
    };
    expect(() =>
      createGrantline({ store: createMemoryStore(), policy: bad, executors: [tokens.executor] }),
    ).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }));
  });

  it('a break-glass actor may not review their own case under another spelling', async () => {
    const { gl } = await setup();
    const g = await gl.breakGlass({
      requester: rita,
      subject: rita,
      justification: { reason: 'incident' },
      targets: [{ id: 'p', system: 'token', resource: 'api://payments' }],
      durationSeconds: 900,
    });
    expect(
      await refusal(gl.review(g.id, { reviewer: { ...sam, id: 'RITA' }, outcome: 'accepted' })),
    ).toMatchObject({ code: 'ERR_APPROVAL_REFUSED', reasons: ['SELF_REVIEW'] });
  });

  it('an overdue break-glass review blocks the same actor under another spelling', async () => {
    const { gl, clock } = await setup();
    const bg = (id: string) =>
      gl.breakGlass({
        requester: { ...rita, id },
        subject: { ...rita, id },
        justification: { reason: 'incident' },
        targets: [{ id: 'p', system: 'token', resource: 'api://payments' }],
        durationSeconds: 900,
      });
    // Break-glass ids must be in folded form, so an actor's cases are all under one stored id (the
    // store matches requester ids exactly): before, a first case opened as 'Rita' was missed when
    // the next came as 'rita', 'RITA' or 'rItA'.
    for (const other of ['Rita', 'RITA', '\uff52ita', 'rI\u0301ta']) {
      await expect(bg(other)).rejects.toMatchObject({
        code: 'ERR_VALIDATION',
        details: { issues: [expect.objectContaining({ path: ['requester', 'id'] })] },
      });
    }
    await bg('rita');
    clock.advance(86_401_000);
    expect(await refusal(bg('rita'))).toMatchObject({
      code: 'ERR_BREAK_GLASS_REFUSED',
      reasons: ['BREAK_GLASS_REVIEW_OVERDUE'],
    });
    // An invisible suffix does not unblock the actor either.
    expect(await refusal(bg('rita\u034f'))).toMatchObject({
      code: 'ERR_VALIDATION',
      paths: [
        ['requester', 'id'],
        ['subject', 'id'],
      ],
    });
  });

  it('foldIdentity folds full case forms, is idempotent, and keeps the forms it folded before', () => {
    for (const [a, b] of [
      ['wei\u00df', 'WEISS'],
      ['WEI\u1e9e', 'weiss'],
      ['\u03bf\u03b4\u03bf\u03c2', '\u039f\u0394\u039f\u03a3'],
      ['\u03bf\u03b4\u03bf\u03c3', '\u03bf\u03b4\u03bf\u03c2'],
      ['\u0131', 'I'],
      ['\ufb00', 'FF'],
      ['Olga', 'olga'],
      ['Jos\u00e9', 'JOSE\u0301'],
      ['\uff4f\uff4c\uff47\uff41', 'olga'],
    ] as const) {
      expect(sameIdentity(a, b), `${a} / ${b}`).toBe(true);
      expect(foldIdentity(foldIdentity(a))).toBe(foldIdentity(a));
    }
    expect(foldIdentity('rita')).toBe('rita');
    expect(sameIdentity('olga', 'olgb')).toBe(false);
  });
});

describe('foldIdentity on printable ASCII', () => {
  it('takes a fast path that folds exactly as the full fold does', () => {
    const full = (id: string) =>
      id.normalize('NFKC').toLowerCase().toUpperCase().toLowerCase().normalize('NFKC');
    fc.assert(
      fc.property(
        fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) }),
        (id) => {
          expect(foldIdentity(id)).toBe(full(id));
        },
      ),
      { numRuns: 2000 },
    );
    for (let c = 0x20; c <= 0x7e; c++)
      expect(foldIdentity(String.fromCharCode(c))).toBe(full(String.fromCharCode(c)));
    // Just outside it, the full fold applies: the Kelvin sign is K, ß is ss.
    expect([foldIdentity('\u212a'), foldIdentity('Weiß'), foldIdentity('~\u00df')]).toEqual([
      'k',
      'weiss',
      '~ss',
    ]);
  });
});
