/**
 * Single-case transitions per second through the store's compareAndSet, side by side with a raw
 * `pg` baseline doing the same work by hand (BEGIN; UPDATE … WHERE id AND version; INSERT event;
 * COMMIT), at concurrency 1 and 16, alternating rounds so drift hits both equally.
 */
import { type AuditEvent, type Grant, chainEvents } from '@grantline/core';
import type pg from 'pg';
import { createPostgresStore, migrate } from '../../packages/store-postgres/src/index.js';
import { seedClones } from '../../packages/store-postgres/test/fixtures/grantline.js';
import { fmt, pct, pool } from './common.js';

const CASES = 4_000;
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 3_000);
const ROUNDS = 2;

interface Live {
  grant: Grant;
  last: AuditEvent;
}

export interface TransitionResult {
  concurrency: number;
  store: { opsPerSec: number; p50: number; p99: number };
  raw: { opsPerSec: number; p50: number; p99: number };
}

function nextOf(l: Live, i: number): { grant: Grant; events: AuditEvent[] } {
  const at = new Date().toISOString();
  const events = chainEvents(l.grant.id, at, l.last, [
    { type: 'usage', actor: { id: 'bench', kind: 'system' }, data: { n: i } },
  ]);
  const ev = events[0]!;
  const grant: Grant = {
    ...l.grant,
    version: l.grant.version + 1,
    updatedAt: at,
    usage: { count: l.grant.usage.count + 1, lastAt: at },
    audit: { seq: ev.seq, head: ev.hash },
  };
  return { grant, events };
}

async function round(
  concurrency: number,
  lives: Live[],
  op: (grant: Grant, expected: number, events: AuditEvent[]) => Promise<void>,
): Promise<{ ops: number; lat: number[]; ms: number }> {
  const lat: number[] = [];
  const end = Date.now() + ROUND_MS;
  const t0 = performance.now();
  // Worker w owns cases w, w+c, w+2c…: no two workers touch one case, so there are no conflicts.
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      let k = w;
      while (Date.now() < end) {
        const l = lives[k % lives.length]!;
        const { grant, events } = nextOf(l, k);
        const s = performance.now();
        await op(grant, l.grant.version, events);
        lat.push(performance.now() - s);
        l.grant = grant;
        l.last = events[0]!;
        k += concurrency;
      }
    }),
  );
  return { ops: lat.length, lat, ms: performance.now() - t0 };
}

export async function benchTransitions(): Promise<TransitionResult[]> {
  const db = pool(16);
  const schema = 'bench_tx';
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await migrate(db, { schema });
  await seedClones(db, schema, CASES, { expiresAt: new Date(Date.now() + 86_400_000) });
  await db.query(`VACUUM ANALYZE ${schema}.grants`);
  const store = createPostgresStore({ db, schema });
  const load = async (prefixFilter: (i: number) => boolean) => {
    const lives: Live[] = [];
    for (let i = 0; i < CASES; i++) {
      if (!prefixFilter(i)) continue;
      const id = `c-${String(i).padStart(7, '0')}`;
      const grant = (await store.get(id))!;
      const evs = await store.events(id);
      lives.push({ grant, last: evs[evs.length - 1]! });
    }
    return lives;
  };
  // Separate halves of the cases for the two contenders, so neither sees the other's versions.
  const storeLives = await load((i) => i % 2 === 0);
  const rawLives = await load((i) => i % 2 === 1);
  const rawOp = async (grant: Grant, expected: number, events: AuditEvent[]) => {
    const client: pg.PoolClient = await db.connect();
    try {
      await client.query('BEGIN');
      const u = await client.query(
        `UPDATE ${schema}.grants SET version = $2, state = $3, due_at = $4, updated_at = $5, audit_seq = $6, doc = $7, lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND version = $8`,
        [
          grant.id,
          grant.version,
          grant.state,
          grant.dueAt,
          grant.updatedAt,
          events[0]!.seq,
          JSON.stringify(grant),
          expected,
        ],
      );
      if (u.rowCount !== 1) throw new Error('raw baseline lost a race it should not have');
      const { globalSeq: _g, ...ev } = events[0]!;
      await client.query(
        `INSERT INTO ${schema}.audit_events (case_id, seq, type, at, doc) VALUES ($1, $2, $3, $4, $5)`,
        [ev.caseId, ev.seq, ev.type, ev.at, JSON.stringify(ev)],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    } finally {
      client.release();
    }
  };
  const storeOp = async (grant: Grant, expected: number, events: AuditEvent[]) => {
    await store.compareAndSet(grant, expected, events);
  };
  const results: TransitionResult[] = [];
  for (const c of [1, 16]) {
    const acc = {
      store: { ops: 0, ms: 0, lat: [] as number[] },
      raw: { ops: 0, ms: 0, lat: [] as number[] },
    };
    await round(c, storeLives, storeOp); // warm-up
    await round(c, rawLives, rawOp);
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, lives, op] of [
        ['store', storeLives, storeOp],
        ['raw', rawLives, rawOp],
      ] as const) {
        const res = await round(c, lives, op);
        acc[name].ops += res.ops;
        acc[name].ms += res.ms;
        acc[name].lat.push(...res.lat);
      }
    }
    const sum = (x: { ops: number; ms: number; lat: number[] }) => ({
      opsPerSec: x.ops / (x.ms / 1000),
      p50: pct(x.lat, 50),
      p99: pct(x.lat, 99),
    });
    results.push({ concurrency: c, store: sum(acc.store), raw: sum(acc.raw) });
  }
  await store.close();
  await db.query(`DROP SCHEMA ${schema} CASCADE`);
  await db.end();
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await benchTransitions()) {
    console.log(
      `c=${r.concurrency}: store ${fmt(r.store.opsPerSec, 0)}/s p50 ${fmt(r.store.p50, 2)} ms p99 ${fmt(r.store.p99, 2)} ms | raw ${fmt(r.raw.opsPerSec, 0)}/s p50 ${fmt(r.raw.p50, 2)} ms p99 ${fmt(r.raw.p99, 2)} ms | ratio ${fmt(r.store.opsPerSec / r.raw.opsPerSec, 2)}x`,
    );
  }
}
