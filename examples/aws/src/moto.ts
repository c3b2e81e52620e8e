import { type ChildProcess, spawn } from 'node:child_process';

/** A moto_server this example started; `stop()` ends it by its PID. */
export interface Moto {
  endpoint: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts `moto_server` (a real AWS API emulator) on 127.0.0.1 with a free port it picks and prints.
 * Only this example's own process is ever stopped, by PID.
 */
export async function startMoto(): Promise<Moto> {
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('moto_server printed no address within 20 s')), 20_000);
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
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start moto_server (pip install "moto[server]"): ${err.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`moto_server exited with ${code}`));
    });
  });
  child.stdout?.resume();
  child.stderr?.resume();
  const pid = child.pid!;
  return {
    endpoint,
    pid,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      process.kill(pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) process.kill(pid, 'SIGKILL');
    },
  };
}

/** Turns on moto's IAM enforcement: from now on every call must be signed by a known, allowed key. */
export async function enforceIam(endpoint: string): Promise<void> {
  const res = await fetch(`${endpoint}/moto-api/reset-auth`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: '0',
  });
  if (!res.ok) throw new Error(`moto reset-auth answered ${res.status}`);
}
