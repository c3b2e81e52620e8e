#!/usr/bin/env node
import { runCli } from './index.js';

// The executable: process streams in, exit code out. Everything else is in runCli.
runCli(process.argv.slice(2), {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`grantline: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
