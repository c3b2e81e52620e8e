import type { TestProject } from 'vitest/node';
import { type MotoServer, motoInstalled, startMoto } from './moto-process.js';

declare module 'vitest' {
  export interface ProvidedContext {
    moto: { endpoint: string; admin: MotoServer['admin'] } | null;
  }
}

/** Starts one moto_server for the package's tests and stops it (by PID) afterwards. */
export default async function setup(project: TestProject) {
  if (!motoInstalled()) {
    if (process.env.CI)
      throw new Error(
        'moto_server is not installed: the AWS executor tests need it in CI (pip install "moto[server]")',
      );
    console.warn(
      '[executor-aws] moto_server not found: integration tests are skipped locally (they fail in CI)',
    );
    project.provide('moto', null);
    return;
  }
  const moto = await startMoto();
  project.provide('moto', { endpoint: moto.endpoint, admin: moto.admin });
  return async () => {
    await moto.stop();
  };
}
