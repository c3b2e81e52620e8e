import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const dir = new URL('..', import.meta.url).pathname;
const hasMoto = spawnSync('sh', ['-c', 'command -v moto_server'], { stdio: 'ignore' }).status === 0;

describe.skipIf(!hasMoto && !process.env.CI)(
  'the AWS example (pnpm --filter @grantline/example-aws start)',
  () => {
    it('starts moto, runs a case to verified with real STS credentials, and stops moto by PID', () => {
      const out = execFileSync('pnpm', ['exec', 'tsx', '--conditions', 'source', 'src/main.ts'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 90_000,
      });
      const pid = /\(pid (\d+)\)/.exec(out)?.[1];
      expect(out).toMatch(/issued STS session gl\.\S+ as ci-deploy-payments/);
      expect(out).toContain('workload listed 1 role(s) with its session');
      expect(out).toMatch(/case \S+ is verified: signed-probe, grantline-deny$/m);
      expect(out).toContain('the revoked session is refused: AccessDenied');
      expect(out).toMatch(/│ verified/);
      expect(out).toContain(`moto_server (pid ${pid}) stopped`);
      // The process it started is gone.
      expect(() => process.kill(Number(pid), 0)).toThrow();
    });
  },
);
