export {
  createAwsExecutor,
  awsCredentialsOf,
  type AwsExecutor,
  type AwsExecutorOptions,
} from './executor.js';
export {
  attributeRecords,
  feedUsage,
  isProbeRecord,
  lookupEventsByAccessKey,
  syncCloudTrailUsage,
  usageFromCloudTrail,
  type AttributedUsage,
  type CloudTrailRecord,
  type FeedResult,
  type SkippedRecord,
} from './usage.js';
export {
  awsParamsSchema,
  assumedRoleParamsSchema,
  iamUserParamsSchema,
  identityCenterParamsSchema,
  type AwsParams,
  type AssumedRoleParams,
  type IamUserParams,
  type IdentityCenterParams,
} from './params.js';
export {
  PROBE_USER_AGENT,
  type AssignmentHolders,
  type AssignmentOrigin,
  type ProbeClientFactory,
  type ProbeClients,
  type ProbeCredentials,
} from './deps.js';
export {
  createMemoryAssignmentHolders,
  createStoreAssignmentHolders,
  assignmentKey,
} from './identity-center.js';
export {
  DENY_BUCKET_SECONDS,
  DENY_POLICY_NAME,
  type DeniedSession,
  denyDocument,
  parseDenyDocument,
  sessionPolicy,
  MIN_SESSION_SECONDS,
  MAX_SESSION_POLICY_CHARS,
} from './assumed-role.js';
export { deriveNames, denyPolicyName, parseDenyPolicyName, type DerivedNames } from './names.js';
export { toExecutorError, isRetryableAwsError, awsCodeOf, redact } from './errors.js';
export type { ProbeObservation, ProbeOutcome, ProbePolicy } from './probe.js';
