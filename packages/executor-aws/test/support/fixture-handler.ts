import { Readable } from 'node:stream';
import { CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import { IAMClient } from '@aws-sdk/client-iam';
import { SSOAdminClient } from '@aws-sdk/client-sso-admin';
import { STSClient } from '@aws-sdk/client-sts';
import { type HttpRequest, HttpResponse } from '@smithy/protocol-http';

/** One recorded HTTP response. */
export interface FixtureResponse {
  status?: number;
  body: string;
  contentType?: string;
}

/** A request as the fixture handler saw it (after the real SDK serialised and signed it). */
export interface SeenRequest {
  operation: string;
  body: string;
  params: URLSearchParams;
  json: Record<string, unknown> | undefined;
  headers: Record<string, string>;
}

/**
 * An SDK `requestHandler` that answers the real AWS SDK v3 clients with recorded responses, per
 * operation and in order (the last one repeats). Why this rather than a client mock: the request
 * is built, serialised and signed by the real client and the response parsed by its real
 * deserialiser, so wire-level mistakes (a field name, an error shape) are caught.
 * The operation is the query-protocol `Action` (STS, IAM) or the JSON `X-Amz-Target` suffix.
 */
export class FixtureHandler {
  readonly seen: SeenRequest[] = [];
  private readonly queues = new Map<string, FixtureResponse[]>();

  constructor(responses: Record<string, FixtureResponse | FixtureResponse[]> = {}) {
    for (const [op, r] of Object.entries(responses)) this.on(op, r);
  }

  /** Sets the responses for an operation (replacing what was left of earlier ones). */
  on(operation: string, responses: FixtureResponse | FixtureResponse[]): this {
    this.queues.set(operation, Array.isArray(responses) ? [...responses] : [responses]);
    return this;
  }

  /** Requests seen for one operation. */
  calls(operation: string): SeenRequest[] {
    return this.seen.filter((s) => s.operation === operation);
  }

  async handle(request: HttpRequest): Promise<{ response: HttpResponse }> {
    const body =
      typeof request.body === 'string'
        ? request.body
        : request.body
          ? Buffer.from(request.body as Uint8Array).toString()
          : '';
    const headers = Object.fromEntries(
      Object.entries(request.headers).map(([k, v]) => [k.toLowerCase(), String(v)]),
    );
    const target = headers['x-amz-target'];
    const params = new URLSearchParams(body);
    const operation = target
      ? target.slice(target.lastIndexOf('.') + 1)
      : (params.get('Action') ?? 'unknown');
    let json: Record<string, unknown> | undefined;
    if (target && body) json = JSON.parse(body) as Record<string, unknown>;
    this.seen.push({ operation, body, params, json, headers });
    const queue = this.queues.get(operation);
    if (!queue || queue.length === 0) throw new Error(`fixture: no recorded response for ${operation}`);
    const r = queue.length > 1 ? queue.shift()! : queue[0]!;
    const contentType = r.contentType ?? (target ? 'application/x-amz-json-1.1' : 'text/xml');
    return {
      response: new HttpResponse({
        statusCode: r.status ?? 200,
        headers: { 'content-type': contentType, 'x-amzn-requestid': 'fixture-request-id' },
        body: Readable.from([Buffer.from(r.body)]),
      }),
    };
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }
}

const credentials = { accessKeyId: 'AKIAFIXTUREEXECUTOR0', secretAccessKey: 'fixture-executor-secret' };
const common = (handler: FixtureHandler) => ({
  region: 'us-east-1',
  credentials,
  requestHandler: handler,
  maxAttempts: 1,
});

/** Real SDK clients whose HTTP is answered by `handler`. */
export function fixtureClients(handler: FixtureHandler) {
  return {
    sts: new STSClient(common(handler)),
    iam: new IAMClient(common(handler)),
    ssoAdmin: new SSOAdminClient(common(handler)),
    cloudtrail: new CloudTrailClient(common(handler)),
  };
}
