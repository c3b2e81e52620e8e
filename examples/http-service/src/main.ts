import { type JWK, exportJWK, generateKeyPair } from 'jose';
import { startServer } from './server.js';

/**
 * Starts one instance from the environment. Every instance of a deployment must share
 * DATABASE_URL, SCHEMA and the key material (EVIDENCE_KEY, ACCESS_TOKEN_KEY: private JWKs as JSON;
 * IDP_JWKS, CI_JWKS: public JWKS as JSON). Missing keys are generated for a local trial run.
 */
const env = process.env;
const json = <T>(name: string): T | undefined => (env[name] ? (JSON.parse(env[name]!) as T) : undefined);
const devKey = async (): Promise<JWK> =>
  exportJWK((await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })).privateKey);
const devJwks = async () => {
  const { publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  return { keys: [{ ...(await exportJWK(publicKey)), alg: 'EdDSA', kid: 'dev' }] };
};

const server = await startServer({
  databaseUrl: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  schema: env.SCHEMA ?? 'grantline_http',
  port: Number(env.PORT ?? 8080),
  ...(env.INSTANCE_ID ? { instanceId: env.INSTANCE_ID } : {}),
  audience: env.AUDIENCE ?? 'grantline-http-service',
  idp: { issuer: env.IDP_ISSUER ?? 'https://idp.example', jwks: json('IDP_JWKS') ?? (await devJwks()) },
  ci: { issuer: env.CI_ISSUER ?? 'https://ci.example', jwks: json('CI_JWKS') ?? (await devJwks()) },
  evidenceKey: json<JWK>('EVIDENCE_KEY') ?? (await devKey()),
  accessTokenKey: json<JWK>('ACCESS_TOKEN_KEY') ?? (await devKey()),
  sweepLimit: Number(env.SWEEP_LIMIT ?? 100),
  drainTimeoutMs: Number(env.DRAIN_TIMEOUT_MS ?? 10_000),
  logger: {
    debug() {},
    info: (m, d) => console.log(m, JSON.stringify(d ?? {})),
    warn: (m, d) => console.warn(m, JSON.stringify(d ?? {})),
    error: (m, d) => console.error(m, JSON.stringify(d ?? {})),
  },
});
console.log(`listening ${server.url} instance=${server.instanceId}`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    console.log(`${signal}: draining`);
    void server.close().then(() => {
      console.log('stopped');
      process.exit(0);
    });
  });
}
