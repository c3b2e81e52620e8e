import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Clock,
  type EvidenceBundle,
  type Principal,
  canonicalJson,
  createGrantline,
  createJoseSigner,
  createJwks,
  createMemoryCheckpointSink,
  createTokenAuthority,
  generateSigningKey,
} from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { runCli } from '../src/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const tsx = join(root, 'node_modules/.bin/tsx');
const bin = join(root, 'packages/cli/src/bin.ts');

/** Spawns a TypeScript entry point through tsx, resolving workspace packages from source. */
function run(
  file: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(tsx, ['--conditions', 'source', file, ...args], {
      cwd: opts.cwd ?? root,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code: code ?? -1, stdout, stderr }));
  });
}

/** The real CLI process. */
const cli = (args: string[]) => run(bin, args);

describe('grantline verify on the evidence the quickstart (pnpm demo) writes', () => {
  let dir: string;
  let bundlePath: string;
  let keysPath: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grantline-cli-quickstart-'));
    const demo = await run(join(root, 'examples/quickstart/src/main.ts'), [], {
      cwd: join(root, 'examples/quickstart'),
      env: { ...process.env, GRANTLINE_EVIDENCE_DIR: dir },
    });
    assert.equal(demo.code, 0, demo.stderr);
    // The command the quickstart tells the auditor to run, taken from its output.
    const command = demo.stdout.match(/grantline verify (\S+) --jwks (\S+)/);
    assert.ok(command, demo.stdout);
    [, bundlePath, keysPath] = command as unknown as [string, string, string];
    assert.equal(bundlePath, join(dir, 'case-1.json'));
  }, 90_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('verifies case 1 as printed: exit 0 and a readable account of who did what', async () => {
    const r = await cli(['verify', bundlePath, '--jwks', keysPath]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /^Grantline evidence: VALID\n/);
    assert.match(r.stdout, /Case {7}\S+, state verified/);
    assert.match(r.stdout, /Signed {5}by key \S+ \(EdDSA\)/);
    assert.match(r.stdout, /Policy {5}acme-jit@2026-12-01, rule payments-write \(high risk\)/);
    assert.match(
      r.stdout,
      /Requested {2}by alice \(human\) for ci:deploy-payments \(workload\) at \S+: "rotate payment webhooks", ticket OPS-4711/,
    );
    assert.match(r.stdout, /Approved {3}by sam as security-officer/);
    assert.match(r.stdout, /Approved {3}by olga as service-owner/);
    assert.match(r.stdout, /Used {7}by ci:deploy-payments from 10\.20\.30\.40 for payments:rotate-webhook/);
    assert.match(r.stdout, /Revoked {4}by ci:deploy-payments \(completion: webhooks rotated\)/);
    assert.match(r.stdout, /Verified {3}payments removed, by executor:token@\S+ with signed-probe/);
    assert.match(r.stdout, /No problems found\.\n\nGrantline evidence: VALID\n$/);
    const json = await cli(['verify', bundlePath, '--jwks', keysPath, '--json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(
      (({ valid, problems, state }) => ({ valid, problems, state }))(JSON.parse(json.stdout)),
      { valid: true, problems: [], state: 'verified' },
    );
  }, 60_000);

  it('rejects a tampered copy: exit 1 and the problem named', async () => {
    // The auditor's copy with the recorded source address changed: the signature and the chain break.
    const original = JSON.parse(await readFile(bundlePath, 'utf8')) as EvidenceBundle;
    const p = JSON.parse(original.payload);
    const usage = p.events.find((e: { type: string }) => e.type === 'usage');
    assert.equal(usage.data.sourceIp, '10.20.30.40');
    usage.data.sourceIp = '10.20.30.41';
    const tampered = join(dir, 'case-1.tampered.json');
    await writeFile(tampered, JSON.stringify({ ...original, payload: canonicalJson(p) }));
    const r = await cli(['verify', tampered, '--jwks', keysPath]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stdout, /^Grantline evidence: INVALID\n/);
    assert.match(r.stdout, /ERROR SIGNATURE_INVALID: /);
    assert.match(r.stdout, new RegExp(`ERROR CHAIN_HASH_MISMATCH \\(event ${usage.seq}\\): `));
    assert.match(r.stdout, /Do not rely on the account above/);
    const json = await cli(['verify', tampered, '--jwks', keysPath, '--json']);
    assert.equal(json.code, 1);
    const verdict = JSON.parse(json.stdout);
    assert.equal(verdict.valid, false);
    assert.deepEqual(
      verdict.problems.map((x: { code: string }) => x.code),
      ['SIGNATURE_INVALID', 'CHAIN_HASH_MISMATCH'],
    );
    // Another party's key in the JWKS instead of the quickstart's: the signer is unknown.
    const otherKeys = join(dir, 'other-keys.json');
    await writeFile(otherKeys, JSON.stringify({ keys: [(await generateSigningKey()).publicJwk] }));
    const unknown = await cli(['verify', bundlePath, '--jwks', otherKeys]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /ERROR KEY_UNKNOWN/);
  }, 60_000);
});

const alice: Principal = { id: 'alice', kind: 'human', roles: ['developer'], teams: [] };
const job: Principal = { id: 'ci:payments:deploy', kind: 'workload', roles: [], teams: [] };
const bob: Principal = { id: 'bob', kind: 'human', roles: ['sre-lead'], teams: [] };

// The quickstart has no checkpointer, so checkpoints, one-byte edits and usage errors use a case of
// their own.
describe('grantline verify (CLI process) on a case with a checkpoint', () => {
  let dir: string;
  let bundlePath: string;
  let keysPath: string;
  let bundle: EvidenceBundle;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grantline-cli-'));
    // The quickstart flow for real: memory store, token executor, request → approve → issue → use → revoke → verify.
    let t = Date.parse('2026-03-02T10:00:00.000Z');
    const clock: Clock = { now: () => new Date(t) };
    const store = createMemoryStore();
    const authority = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const sink = createMemoryCheckpointSink();
    const service = createGrantline({
      store,
      clock,
      signer,
      checkpoints: { sink },
      executors: [authority.executor],
      policy: {
        id: 'quickstart',
        version: '1',
        owner: 'security',
        rules: [
          {
            id: 'api',
            risk: 'medium',
            operator: 'platform',
            maxDurationSeconds: 3600,
            approvals: { count: 1, roles: ['sre-lead'] },
          },
        ],
      },
    });
    const g = await service.request({
      requester: alice,
      subject: job,
      justification: { reason: 'deploy payments' },
      targets: [{ id: 'api', system: 'token', resource: 'api://payments' }],
      durationSeconds: 900,
    });
    t += 30_000;
    await service.approve(g.id, { approver: bob });
    const { credentials } = await service.issue(g.id);
    await authority.verifier.verify(credentials.api!.token!, { audience: 'api://payments' });
    t += 60_000;
    await service.recordUsage(g.id, { sourceIp: '10.0.0.7', action: 'deploy' });
    await service.revoke(g.id, { actor: alice, reason: 'deployed' });
    bundle = await service.evidence(g.id);
    bundlePath = join(dir, 'bundle.json');
    keysPath = join(dir, 'keys.json');
    await writeFile(bundlePath, JSON.stringify(bundle, null, 2));
    await writeFile(keysPath, JSON.stringify(createJwks(signer)));
    await writeFile(join(dir, 'checkpoint.json'), JSON.stringify(await service.checkpoint()));
    await writeFile(
      join(dir, 'private.json'),
      JSON.stringify({ keys: [(await generateSigningKey()).privateJwk] }),
    );
  }, 60_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('verifies against a checkpoint and reports JSON with --json', async () => {
    const r = await cli([
      'verify',
      bundlePath,
      '--jwks',
      keysPath,
      '--checkpoint',
      join(dir, 'checkpoint.json'),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.valid, true);
    assert.deepEqual(out.problems, []);
    assert.equal(out.state, 'verified');
  }, 60_000);

  it('a one-byte change in the file fails too', async () => {
    const text = JSON.stringify(bundle);
    const i = text.indexOf('deployed');
    const flipped = join(dir, 'flipped.json');
    await writeFile(flipped, `${text.slice(0, i)}D${text.slice(i + 1)}`);
    const r = await cli(['verify', flipped, '--jwks', keysPath]);
    assert.equal(r.code, 1);
  }, 60_000);

  it('usage errors exit 2: no JWKS, unreadable file, a private key given as JWKS', async () => {
    const a = await cli(['verify', bundlePath]);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /Usage: grantline verify/);
    const b = await cli(['verify', join(dir, 'missing.json'), '--jwks', keysPath]);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /cannot read bundle .*ENOENT/);
    const c = await cli(['verify', bundlePath, '--jwks', join(dir, 'private.json')]);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /private key/);
  }, 60_000);
});

/** Every character a terminal may act on, except the line feed the CLI itself writes between lines. */
const RAW_CONTROL =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** runCli in-process: the exit code and everything written to standard output and error. */
async function runInProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { out: (t) => (stdout += t), err: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

/** The lines of a report, without the final line break. */
const linesOf = (out: string) => out.replace(/\n$/, '').split('\n');

// Bundle text is untrusted, even when it is correctly signed: the service stores whatever reason and
// identifiers the host passes, escape sequences included.
describe('grantline verify prints no terminal control character from a bundle', () => {
  let dir: string;
  let keysPath: string;
  let genuine: EvidenceBundle;
  const ESC = '\u001b';
  const fakeReport = `${ESC}[2J${ESC}[H${ESC}[32mGrantline evidence: VALID${ESC}[0m\n\nNo problems found.\n${ESC}[8m`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grantline-cli-controls-'));
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test' });
    const gl = createGrantline({
      store: createMemoryStore(),
      executors: [tokens.executor],
      signer,
      policy: {
        id: 'controls',
        version: '1',
        owner: 'security',
        rules: [
          {
            id: 'any',
            risk: 'low',
            template: 'auto',
            match: { systems: ['token'], resources: ['api://*'], permissions: ['read'] },
            operator: 'ops',
            maxDurationSeconds: 600,
            approvals: { count: 0, roles: [] },
          },
        ],
      },
    });
    // C0, C1 (CSI), DEL, a line separator and bidi overrides and isolates, in a genuinely signed
    // case: in its free text (core refuses control and format characters in principal ids; the
    // tampered bundle below carries one in an approver id).
    const job: Principal = {
      id: 'ci:export',
      kind: 'workload',
      roles: [],
      teams: [],
    };
    const c = await gl.request({
      requester: job,
      subject: job,
      // (The fake approval line is in the reason: a resource with a line break matches no glob.)
      justification: {
        reason: `nightly\n${fakeReport}\u009b2J\u007f\u2028 api://orders\r\nApproved   by mallory as security-officer`,
      },
      targets: [{ id: 'api', system: 'token', resource: 'api://orders', permissions: ['read'] }],
      durationSeconds: 300,
      template: 'auto',
    });
    await gl.issue(c.id);
    await gl.complete(c.id, { actor: job, reason: `done\u2029${ESC}[1A` });
    genuine = await gl.evidence(c.id);
    keysPath = join(dir, 'keys.json');
    await writeFile(join(dir, 'genuine.json'), JSON.stringify(genuine));
    await writeFile(keysPath, JSON.stringify(createJwks(signer)));
    // A tampered copy: the reason replaced by a fake report, a fake approval appended to an approver id.
    const p = JSON.parse(genuine.payload);
    p.record.justification.reason = fakeReport;
    p.record.approvals = [
      {
        approver: { id: 'sam\nApproved   by olga as service-owner', kind: 'human', roles: [] },
        role: 'x\u202e',
        at: 'now',
      },
    ];
    await writeFile(join(dir, 'tampered.json'), JSON.stringify({ ...genuine, payload: canonicalJson(p) }));
  }, 60_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a genuinely signed bundle: VALID, every control character escaped, the verdict again as the last line', async () => {
    const r = await runInProcess(['verify', join(dir, 'genuine.json'), '--jwks', keysPath]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, RAW_CONTROL);
    const lines = linesOf(r.stdout);
    assert.equal(lines[0], 'Grantline evidence: VALID');
    assert.equal(lines.at(-1), 'Grantline evidence: VALID');
    // The reason is shown, quoted and escaped, on its own line; nothing from it starts a line.
    assert.ok(
      lines.some((l) => l.includes('"nightly\\n\\u001b[2J\\u001b[H\\u001b[32mGrantline evidence: VALID')),
    );
    assert.equal(lines.filter((l) => l.startsWith('Grantline evidence:')).length, 2);
    assert.equal(lines.filter((l) => l.startsWith('Approved')).length, 0);
    assert.ok(lines.some((l) => l.includes('api://orders\\r\\nApproved   by mallory')));
    assert.ok(lines.some((l) => l.includes('done\\u2029\\u001b[1A')));
    const json = await runInProcess(['verify', join(dir, 'genuine.json'), '--jwks', keysPath, '--json']);
    assert.equal(json.code, 0);
    assert.doesNotMatch(json.stdout, RAW_CONTROL);
    assert.equal(JSON.parse(json.stdout).valid, true);
  });

  it('a tampered bundle (the CLI process): exit 1, no raw control character, INVALID first and last, no fake line', async () => {
    const r = await cli(['verify', join(dir, 'tampered.json'), '--jwks', keysPath]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, RAW_CONTROL);
    const lines = linesOf(r.stdout);
    assert.equal(lines[0], 'Grantline evidence: INVALID');
    assert.equal(lines.at(-1), 'Grantline evidence: INVALID');
    assert.deepEqual(
      lines.filter((l) => /^(Grantline evidence|No problems found|Approved)/.test(l)),
      [
        'Grantline evidence: INVALID',
        'Approved   by "sam\\nApproved   by olga as service-owner" as "x\\u202e" at now',
        'Grantline evidence: INVALID',
      ],
    );
    assert.match(r.stdout, /ERROR SIGNATURE_INVALID: /);
    const json = await runInProcess(['verify', join(dir, 'tampered.json'), '--jwks', keysPath, '--json']);
    assert.equal(json.code, 1);
    assert.doesNotMatch(json.stdout, RAW_CONTROL);
  }, 60_000);
});

describe('grantline verify on a tampered bundle missing members', () => {
  let dir: string;
  let keysPath: string;
  let bundle: EvidenceBundle;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grantline-cli-missing-'));
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test' });
    const gl = createGrantline({
      store: createMemoryStore(),
      executors: [tokens.executor],
      signer,
      policy: {
        id: 'missing',
        version: '1',
        owner: 'security',
        rules: [
          {
            id: 'api',
            risk: 'medium',
            operator: 'platform',
            maxDurationSeconds: 3600,
            approvals: { count: 1, roles: ['sre-lead'] },
          },
        ],
      },
    });
    const g = await gl.request({
      requester: alice,
      subject: job,
      justification: { reason: 'deploy payments', ticket: 'OPS-1' },
      targets: [{ id: 'api', system: 'token', resource: 'api://payments' }],
      durationSeconds: 900,
    });
    await gl.approve(g.id, { approver: bob });
    await gl.issue(g.id);
    await gl.recordUsage(g.id, { sourceIp: '10.0.0.7', action: 'deploy' });
    await gl.revoke(g.id, { actor: alice, reason: 'deployed' });
    bundle = await gl.evidence(g.id);
    keysPath = join(dir, 'keys.json');
    await writeFile(keysPath, JSON.stringify(createJwks(signer)));
  }, 60_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Verifies the bundle with its payload changed by `edit`; the report must name the broken signature. */
  async function verifyEdited(name: string, edit: (p: Record<string, unknown>) => void) {
    const p = JSON.parse(bundle.payload);
    edit(p);
    const payload = JSON.stringify(p);
    if (payload === bundle.payload) return; // a member that was null already
    const file = join(dir, `${name}.json`);
    await writeFile(file, JSON.stringify({ ...bundle, payload }));
    const r = await runInProcess(['verify', file, '--jwks', keysPath]);
    assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr, '', name);
    assert.match(r.stdout, /ERROR SIGNATURE_INVALID: /, name);
    assert.equal(linesOf(r.stdout).at(-1), 'Grantline evidence: INVALID', name);
  }

  it('no record.justification, or issuance.ref null: exit 1 with SIGNATURE_INVALID, not a crash (exit 2)', async () => {
    await verifyEdited('no-justification', (p) => {
      delete (p.record as Record<string, unknown>).justification;
    });
    await verifyEdited('ref-null', (p) => {
      (p.record as { targets: { issuance: { ref: unknown } }[] }).targets[0]!.issuance.ref = null;
    });
  });

  it('every member of the payload deleted, or set to null, in turn: exit 1 and the problems printed', async () => {
    const paths: (string | number)[][] = [];
    const walk = (v: unknown, path: (string | number)[]) => {
      if (v === null || typeof v !== 'object') return;
      for (const [k, x] of Object.entries(v)) {
        const at = [...path, Array.isArray(v) ? Number(k) : k];
        paths.push(at);
        walk(x, at);
      }
    };
    walk(JSON.parse(bundle.payload), []);
    assert.ok(paths.length > 100, String(paths.length));
    for (const path of paths) {
      for (const how of ['delete', 'null'] as const) {
        await verifyEdited(`${how}-${paths.indexOf(path)}`, (p) => {
          let parent: Record<string | number, unknown> = p;
          for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
          const last = path.at(-1)!;
          if (how === 'null') parent[last] = null;
          else if (Array.isArray(parent)) parent.splice(last as number, 1);
          else delete parent[last];
        });
      }
    }
  }, 120_000);
});
