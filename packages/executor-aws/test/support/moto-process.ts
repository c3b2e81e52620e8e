import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  IAMClient,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';

/** A running moto_server with IAM enforcement on and an admin user to act as the executor. */
export interface MotoServer {
  endpoint: string;
  pid: number;
  admin: { arn: string; accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

/** True when the `moto_server` command exists on PATH. */
export function motoInstalled(): boolean {
  return spawnSync('sh', ['-c', 'command -v moto_server'], { stdio: 'ignore' }).status === 0;
}

/**
 * Starts `moto_server -H 127.0.0.1 -p 0` (it picks a free port and prints it), creates an admin
 * user with an Allow-all policy and access keys while moto still accepts unauthenticated bootstrap
 * calls, then switches IAM enforcement on (`/moto-api/reset-auth` with body `0`). Stopped by PID.
 */
export async function startMoto(): Promise<MotoServer> {
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`moto_server printed no address in 20 s: ${out.slice(0, 500)}`)),
      20_000,
    );
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`moto_server exited with ${code}: ${out.slice(0, 500)}`));
    });
  });
  // Keep draining its output so the pipe never fills up and blocks the server.
  child.stdout?.resume();
  child.stderr?.resume();
  const stop = async () => {
    if (child.exitCode !== null || !child.pid) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    process.kill(child.pid, 'SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    if (child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  };
  try {
    const boot = new IAMClient({
      region: 'us-east-1',
      endpoint,
      credentials: { accessKeyId: 'bootstrap', secretAccessKey: 'bootstrap' },
    });
    const user = await boot.send(new CreateUserCommand({ UserName: 'grantline-executor' }));
    await boot.send(
      new PutUserPolicyCommand({
        UserName: 'grantline-executor',
        PolicyName: 'admin',
        PolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }],
        }),
      }),
    );
    const key = await boot.send(new CreateAccessKeyCommand({ UserName: 'grantline-executor' }));
    const res = await fetch(`${endpoint}/moto-api/reset-auth`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '0',
    });
    if (!res.ok) throw new Error(`reset-auth answered ${res.status}`);
    return {
      endpoint,
      pid: child.pid!,
      admin: {
        arn: user.User!.Arn!,
        accessKeyId: key.AccessKey!.AccessKeyId!,
        secretAccessKey: key.AccessKey!.SecretAccessKey!,
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
