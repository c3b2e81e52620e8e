import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from './audit.js';
import { validationError } from './errors.js';
import type {
  Approval,
  Grant,
  Justification,
  PolicySnapshot,
  Principal,
  Target,
  UsageConstraints,
} from './model.js';
import { str } from './json-data.js';
import { foldIdentity, sameIdentity, usageConstraintsSchema, visibleIdSchema } from './model.js';

const id = str().min(1).max(256);
/** Durations in a policy are at most a year: a larger one is a mistake (and overflows dates). */
const YEAR_SECONDS = 366 * 24 * 3600;
const seconds = () => z.number().int().positive().max(YEAR_SECONDS);

const cidr = str().refine(
  (v) => parseCidr(v) !== null,
  'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32',
);
const regexSource = str().refine((v) => {
  try {
    new RegExp(v);
    return true;
  } catch {
    return false;
  }
}, 'not a valid regular expression');

// #region policy-schema
export const ruleSchema = z
  .strictObject({
    /** `break-glass` is reserved: it names the snapshot of break-glass cases. */
    id: id.refine((v) => v !== 'break-glass', 'the rule id break-glass is reserved for break-glass cases'),
    description: str().optional(),
    risk: z.enum(['low', 'medium', 'high']),
    /** What the rule applies to; every listed criterion must hold. Globs use `*`. */
    match: z
      .strictObject({
        systems: z.array(str()).optional(),
        resources: z.array(str()).optional(),
        /**
         * The target must name at least one permission, and every one must match one of these. A
         * target that names none asks for whatever its executor grants by default, so it never
         * matches a rule that lists permissions. The policy does not read `target.params`: where an
         * executor grants from params (API key `scopes`, a PostgreSQL `group`), those are not
         * covered by this list, and a rule or template governs whatever params its matching
         * targets carry.
         */
        permissions: z.array(str()).optional(),
        subjectKinds: z.array(z.enum(['human', 'workload'])).optional(),
        /** The requester must hold at least one of these roles. */
        requesterRoles: z.array(str()).optional(),
      })
      .default({}),
    /** The accountable governance function (defaults to the policy's owner). */
    owner: id.optional(),
    /** The team that executes; it may not approve. */
    operator: visibleIdSchema,
    maxDurationSeconds: seconds(),
    require: z
      .strictObject({
        ticket: z.strictObject({ pattern: regexSource.optional() }).optional(),
        changeRecord: z.strictObject({ pattern: regexSource.optional() }).optional(),
        /** The justification must name the workload, equal to the subject's id. */
        workload: z.boolean().optional(),
        /** Approvers must prove their identity with a signed assertion. */
        provenApprovers: z.boolean().optional(),
        /** A workload subject must prove its identity with a signed assertion. */
        provenWorkload: z.boolean().optional(),
      })
      .default({}),
    approvals: z
      .strictObject({
        count: z.number().int().min(0).max(10),
        roles: z.array(id).default([]),
        distinctRoles: z.boolean().default(false),
      })
      .default({ count: 1, roles: [], distinctRoles: false }),
    /**
     * A pre-approved low-risk template: requests naming it are approved by policy, no human needed.
     * It pre-approves the systems, resources and permissions it lists, and any `params` (the policy
     * does not read them): on a system whose executor grants from params, the template pre-approves
     * every params value its executor accepts, so keep such systems out of templates or let the
     * executor grant from `permissions`.
     */
    template: id.optional(),
    constraints: usageConstraintsSchema.extend({ sourceCidrs: z.array(cidr).optional() }).optional(),
    extension: z
      .strictObject({
        requiresApproval: z.boolean().default(true),
        maxExtensions: z.number().int().min(0).default(1),
      })
      .optional(),
    /** Pending requests expire after this long (default: the policy's). */
    requestTtlSeconds: seconds().optional(),
  })
  .superRefine((r, ctx) => {
    if (r.template !== undefined && r.risk !== 'low') {
      ctx.addIssue({
        code: 'custom',
        path: ['template'],
        message: 'only low-risk rules may be pre-approved templates',
      });
    }
    if (r.template !== undefined) {
      // A template approves with no human: what it covers must be spelled out, never "anything".
      for (const key of ['systems', 'resources', 'permissions'] as const) {
        if (!r.match[key] || r.match[key].length === 0) {
          ctx.addIssue({
            code: 'custom',
            path: ['match', key],
            message: `a pre-approved template must list match.${key} (without it, it pre-approves any ${key})`,
          });
        }
      }
    }
    if (r.template === undefined && r.approvals.count === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['approvals', 'count'],
        message: 'a rule that is not a template needs at least one approval',
      });
    }
    if (r.approvals.count > 0 && r.approvals.roles.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['approvals', 'roles'],
        message: 'name the roles that qualify an approver',
      });
    } else if (r.extension?.requiresApproval && r.approvals.roles.length === 0) {
      // An extension needs at least one approval from these roles (a template's too): none qualifies.
      ctx.addIssue({
        code: 'custom',
        path: ['approvals', 'roles'],
        message: 'extensions require approval: name the roles that qualify an approver',
      });
    }
    if (r.approvals.distinctRoles && r.approvals.roles.length < r.approvals.count) {
      ctx.addIssue({
        code: 'custom',
        path: ['approvals', 'roles'],
        message: 'distinct roles need at least `count` qualifying roles',
      });
    }
    if (r.risk === 'high' && r.template === undefined && r.approvals.count < 2) {
      ctx.addIssue({
        code: 'custom',
        path: ['approvals', 'count'],
        message: 'high-risk rules require dual control (count >= 2)',
      });
    }
  });
export type Rule = z.output<typeof ruleSchema>;

export const policySchema = z
  .strictObject({
    id,
    version: str().min(1),
    owner: id,
    rules: z.array(ruleSchema).min(1),
    breakGlass: z
      .strictObject({
        allowedRoles: z.array(id).min(1),
        maxDurationSeconds: z
          .number()
          .int()
          .positive()
          .max(24 * 3600),
        reviewWithinSeconds: seconds(),
        reviewerRoles: z.array(id).min(1),
        operator: visibleIdSchema,
      })
      .optional(),
    requestTtlSeconds: seconds().default(24 * 3600),
    /** Approved cases not issued within this long expire. */
    activationTtlSeconds: seconds().default(3600),
  })
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.rules.forEach((r, i) => {
      if (seen.has(r.id))
        ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id ${r.id}` });
      seen.add(r.id);
    });
  });
export type Policy = z.output<typeof policySchema>;
export type PolicyInput = z.input<typeof policySchema>;
// #endregion

/**
 * A policy validated and hashed, ready for evaluation. Only {@link compilePolicy} makes one: it is
 * deep-frozen, so the policy evaluated is always the one its hash covers.
 */
export interface CompiledPolicy {
  readonly policy: Policy;
  /** SHA-256 over the canonical JSON of the validated policy; frozen into every case. */
  readonly hash: string;
}

/**
 * The compiled policies this module made. Membership cannot be forged (unlike a property or a
 * `Symbol.for` brand, which anyone can set): any other `{ policy, hash }` is compiled again.
 */
const compiledPolicies = new WeakSet<object>();

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function compile(input: unknown, at: (string | number)[] = []): CompiledPolicy {
  const parsed = policySchema.safeParse(input);
  if (!parsed.success) {
    throw validationError(
      'policy',
      parsed.error.issues.map((i) => ({ ...i, path: [...at, ...i.path] })),
    );
  }
  // A copy of the parsed data, deep-frozen: nothing the caller still holds is shared with it.
  const policy = deepFreeze(structuredClone(parsed.data));
  const compiled: CompiledPolicy = Object.freeze({ policy, hash: sha256Hex(canonicalJson(policy)) });
  compiledPolicies.add(compiled);
  return compiled;
}

/**
 * Validates a policy written in TypeScript or loaded from JSON, hashes it and deep-freezes it.
 * Given a policy this function compiled, returns it as is. Given any other `{ policy, hash }` (one
 * compiled by another copy of this package, or made by hand), compiles its `policy` again and
 * refuses it unless the hash is the one computed.
 * @throws GrantlineError `ERR_VALIDATION` with the path of the bad field (`hash` for a hash that
 * does not match).
 */
export function compilePolicy(input: PolicyInput | CompiledPolicy): CompiledPolicy {
  if (typeof input === 'object' && input !== null && compiledPolicies.has(input))
    return input as CompiledPolicy;
  if (typeof input === 'object' && input !== null && 'hash' in input && 'policy' in input) {
    const claimed = (input as { hash: unknown }).hash;
    const compiled = compile((input as { policy: unknown }).policy, ['policy']);
    if (claimed !== compiled.hash) {
      throw validationError('policy', [
        {
          code: 'custom',
          path: ['hash'],
          message: 'not the hash of the policy: a compiled policy must come from compilePolicy',
          input: claimed,
        },
      ]);
    }
    return compiled;
  }
  return compile(input);
}

/** A machine-readable reason attached to every decision. */
export interface DecisionReason {
  code: string;
  message: string;
  path?: (string | number)[];
}

/** The outcome of a policy evaluation: never a bare boolean. */
export interface Decision<T = undefined> {
  allowed: boolean;
  reasons: DecisionReason[];
  value?: T;
}

/** Turns a glob with `*` into an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

/**
 * A small memo for what a policy compiles from its text (globs, reference patterns, CIDR lists):
 * rules are evaluated on every request and every usage record, their text rarely changes. Bounded:
 * emptied when full, so texts from many policies over time cannot grow it without limit.
 */
function memo<V>(build: (key: string) => V, max = 1000): (key: string) => V {
  const cache = new Map<string, V>();
  return (key) => {
    let v = cache.get(key);
    if (v === undefined) {
      if (cache.size >= max) cache.clear();
      v = build(key);
      cache.set(key, v);
    }
    return v;
  };
}

// Cached RegExps are only used with `test` and have no `g`/`y` flag: `lastIndex` is never read.
const globRegExp = memo(globToRegExp);
const patternRegExp = memo((source) => new RegExp(source));

function globMatch(patterns: readonly string[] | undefined, value: string): boolean {
  return patterns === undefined || patterns.some((p) => globRegExp(p).test(value));
}

function ruleMatches(rule: Rule, target: Target, requester: Principal, subject: Principal): boolean {
  const m = rule.match;
  if (!globMatch(m.systems, target.system)) return false;
  if (!globMatch(m.resources, target.resource)) return false;
  if (m.permissions) {
    // A target that names no permissions asks for whatever its executor grants by default, which
    // is not "only the listed permissions": it never matches a rule that limits permissions.
    const asked = target.permissions ?? [];
    if (asked.length === 0 || !asked.every((p) => globMatch(m.permissions, p))) return false;
  }
  if (m.subjectKinds && !m.subjectKinds.includes(subject.kind)) return false;
  if (m.requesterRoles && !requester.roles.some((r) => m.requesterRoles!.includes(r))) return false;
  return true;
}

/** What a request asks for, as seen by the policy. */
export interface RequestFacts {
  requester: Principal;
  subject: Principal;
  justification: Justification;
  targets: Target[];
  durationSeconds: number;
  template?: string;
}

/**
 * Finds the rule governing a request and checks its required references and duration. Each target
 * must match a rule (templates only when the request names them), and every target of one case must
 * be governed by the same rule: a case whose targets match different rules is refused (`RULES_DIFFER`)
 * rather than governed by one of them, since one snapshot cannot carry several rules' approvers,
 * operator teams, proof requirements and usage constraints without dropping some. Ask for such
 * targets in separate cases.
 */
export function evaluateRequest(compiled: CompiledPolicy, req: RequestFacts): Decision<PolicySnapshot> {
  const { policy } = compiled;
  const reasons: DecisionReason[] = [];
  const matched: Rule[] = [];
  req.targets.forEach((t, i) => {
    const rule = policy.rules.find(
      (r) =>
        (req.template === undefined ? r.template === undefined : r.template === req.template) &&
        ruleMatches(r, t, req.requester, req.subject),
    );
    if (!rule) {
      reasons.push({
        code: req.template === undefined ? 'NO_MATCHING_RULE' : 'TEMPLATE_NOT_APPLICABLE',
        message:
          req.template === undefined
            ? `no policy rule admits target ${t.id} (${t.system}:${t.resource})`
            : `template ${req.template} does not cover target ${t.id} (${t.system}:${t.resource})`,
        path: ['targets', i],
      });
    } else matched.push(rule);
  });
  if (reasons.length > 0) return { allowed: false, reasons };
  const governing = matched[0]!;
  if (matched.some((r) => r !== governing)) {
    // Merging would have to keep every rule's quorum, operator exclusion, proofs and per-target
    // constraints; one snapshot holds one rule, so combining targets is refused instead of weakened.
    return {
      allowed: false,
      reasons: [
        {
          code: 'RULES_DIFFER',
          message: `the targets are governed by different rules (${req.targets
            .map((t, i) => `${t.id}: ${matched[i]!.id}`)
            .join(', ')}); request them in separate cases`,
          path: ['targets'],
        },
      ],
    };
  }
  const maxDuration = governing.maxDurationSeconds;
  if (req.durationSeconds > maxDuration) {
    reasons.push({
      code: 'DURATION_EXCEEDS_MAX',
      message: `requested ${req.durationSeconds}s exceeds the rule's maximum of ${maxDuration}s`,
      path: ['durationSeconds'],
    });
  }
  reasons.push(...checkReferences(governing, req));
  if (reasons.length > 0) return { allowed: false, reasons };
  const snapshot = ruleSnapshot(compiled, governing);
  return {
    allowed: true,
    reasons: [
      {
        code: governing.template === undefined ? 'RULE_MATCHED' : 'TEMPLATE_PRE_APPROVED',
        message:
          governing.template === undefined
            ? `rule ${governing.id} (${governing.risk} risk) governs; ${governing.approvals.count} approval(s) required`
            : `pre-approved template ${governing.template} (rule ${governing.id})`,
      },
    ],
    value: snapshot,
  };
}

/** Snapshots made, by rule (a compiled policy's rules are frozen), and their hashes, by snapshot. */
const snapshotsByRule = new WeakMap<Rule, PolicySnapshot>();
const snapshotHashes = new WeakMap<PolicySnapshot, string>();

/**
 * The snapshot a case governed by `rule` freezes into its record: one frozen object per rule of a
 * compiled policy, made once (a snapshot depends on the policy and the rule alone).
 */
function ruleSnapshot(compiled: CompiledPolicy, rule: Rule): PolicySnapshot {
  // Cached (and frozen) only for policies compilePolicy made: their rules are frozen copies of their
  // own. A CompiledPolicy-shaped object from elsewhere may share rule objects with another policy.
  if (!compiledPolicies.has(compiled)) return snapshotOfRule(compiled.policy, compiled.hash, rule);
  let snapshot = snapshotsByRule.get(rule);
  if (snapshot === undefined) {
    snapshot = deepFreeze(snapshotOfRule(compiled.policy, compiled.hash, rule));
    snapshotsByRule.set(rule, snapshot);
    snapshotHashes.set(snapshot, sha256Hex(canonicalJson(snapshot)));
  }
  return snapshot;
}

/**
 * The snapshot a case governed by `rule` of the validated `policy` (whose hash is `hash`) records:
 * what the service freezes into the case, and what `verifyEvidence` rebuilds from an embedded
 * policy document to compare.
 */
export function snapshotOfRule(policy: Policy, hash: string, rule: Rule): PolicySnapshot {
  return {
    policyId: policy.id,
    policyVersion: policy.version,
    policyHash: hash,
    ruleId: rule.id,
    risk: rule.risk,
    owner: rule.owner ?? policy.owner,
    operator: rule.operator,
    approvals: {
      count: rule.template === undefined ? rule.approvals.count : 0,
      roles: rule.approvals.roles,
      distinctRoles: rule.approvals.distinctRoles,
    },
    maxDurationSeconds: rule.maxDurationSeconds,
    activationTtlSeconds: policy.activationTtlSeconds,
    ...(rule.template === undefined ? {} : { template: rule.template }),
    ...(rule.constraints === undefined ? {} : { constraints: rule.constraints }),
    ...(rule.require.provenApprovers ? { requireProvenApprovers: true } : {}),
    ...(rule.require.provenWorkload ? { requireProvenWorkload: true } : {}),
    ...(rule.extension === undefined ? {} : { extension: rule.extension }),
  };
}

/** The snapshot of a break-glass case under the validated `policy` (see {@link snapshotOfRule}). */
export function snapshotOfBreakGlass(policy: Policy, hash: string): PolicySnapshot {
  const bg = policy.breakGlass!;
  return {
    policyId: policy.id,
    policyVersion: policy.version,
    policyHash: hash,
    ruleId: 'break-glass',
    risk: 'high',
    owner: policy.owner,
    operator: bg.operator,
    approvals: { count: 0, roles: [], distinctRoles: false },
    maxDurationSeconds: bg.maxDurationSeconds,
    activationTtlSeconds: policy.activationTtlSeconds,
  };
}

const breakGlassSnapshots = new WeakMap<CompiledPolicy, PolicySnapshot>();

/**
 * The snapshot of a break-glass case under `compiled`, made once per compiled policy (cached and
 * frozen as {@link ruleSnapshot}'s). The policy must allow break-glass.
 */
export function breakGlassSnapshot(compiled: CompiledPolicy): PolicySnapshot {
  if (!compiledPolicies.has(compiled)) return snapshotOfBreakGlass(compiled.policy, compiled.hash);
  let snapshot = breakGlassSnapshots.get(compiled);
  if (snapshot === undefined) {
    snapshot = deepFreeze(snapshotOfBreakGlass(compiled.policy, compiled.hash));
    breakGlassSnapshots.set(compiled, snapshot);
    snapshotHashes.set(snapshot, sha256Hex(canonicalJson(snapshot)));
  }
  return snapshot;
}

/**
 * SHA-256 over the canonical JSON of a case's policy snapshot, as evidence bundles carry it
 * (`policy.snapshotHash`); the request event records it, which binds the snapshot to the case's
 * hash chain. Computed once for each snapshot `evaluateRequest` makes.
 */
export function policySnapshotHash(snapshot: PolicySnapshot): string {
  return snapshotHashes.get(snapshot) ?? sha256Hex(canonicalJson(snapshot));
}

function checkReferences(rule: Rule, req: RequestFacts): DecisionReason[] {
  const out: DecisionReason[] = [];
  const { ticket, changeRecord, workload } = rule.require;
  if (ticket) {
    if (!req.justification.ticket) {
      out.push({
        code: 'TICKET_REQUIRED',
        message: `rule ${rule.id} requires a ticket reference`,
        path: ['justification', 'ticket'],
      });
    } else if (ticket.pattern && !patternRegExp(ticket.pattern).test(req.justification.ticket)) {
      out.push({
        code: 'TICKET_PATTERN',
        message: `ticket does not match the pattern ${ticket.pattern} required by rule ${rule.id}`,
        path: ['justification', 'ticket'],
      });
    }
  }
  if (changeRecord) {
    if (!req.justification.changeRecord) {
      out.push({
        code: 'CHANGE_RECORD_REQUIRED',
        message: `rule ${rule.id} requires a change record`,
        path: ['justification', 'changeRecord'],
      });
    } else if (
      changeRecord.pattern &&
      !patternRegExp(changeRecord.pattern).test(req.justification.changeRecord)
    ) {
      out.push({
        code: 'CHANGE_RECORD_PATTERN',
        message: `change record does not match the pattern ${changeRecord.pattern}`,
        path: ['justification', 'changeRecord'],
      });
    }
  }
  if (workload) {
    if (!req.justification.workload) {
      out.push({
        code: 'WORKLOAD_REQUIRED',
        message: `rule ${rule.id} requires a workload reference`,
        path: ['justification', 'workload'],
      });
    } else if (req.subject.kind === 'workload' && req.justification.workload !== req.subject.id) {
      out.push({
        code: 'WORKLOAD_MISMATCH',
        message: `workload reference ${req.justification.workload} is not the subject ${req.subject.id}`,
        path: ['justification', 'workload'],
      });
    }
  }
  return out;
}

/**
 * Decides whether `approver` may approve `grant`, and in which role. Refuses self-approval (the
 * requester or the subject), members of the operator team, non-humans, an approver who already
 * approved, roles that do not qualify, and a role already used when distinct roles are required.
 */
export function evaluateApproval(
  grant: Pick<Grant, 'requester' | 'subject' | 'policy' | 'approvals'>,
  approver: Principal,
  requestedRole?: string,
  proven = false,
): Decision<{ role: string }> {
  const reasons: DecisionReason[] = [];
  const req = grant.policy.approvals;
  if (sameIdentity(approver.id, grant.requester.id)) {
    reasons.push({
      code: 'SELF_APPROVAL_REQUESTER',
      message: `${approver.id} requested this case and may not approve it`,
      path: ['approver', 'id'],
    });
  }
  if (sameIdentity(approver.id, grant.subject.id)) {
    reasons.push({
      code: 'SELF_APPROVAL_SUBJECT',
      message: `${approver.id} is the subject of this case and may not approve it`,
      path: ['approver', 'id'],
    });
  }
  if (approver.teams.some((team) => sameIdentity(team, grant.policy.operator))) {
    reasons.push({
      code: 'OPERATOR_TEAM_APPROVAL',
      message: `${approver.id} is in the operator team ${grant.policy.operator}, which executes and may not approve`,
      path: ['approver', 'teams'],
    });
  }
  if (approver.kind !== 'human') {
    reasons.push({
      code: 'APPROVER_NOT_HUMAN',
      message: 'approvals must come from a human principal',
      path: ['approver', 'kind'],
    });
  }
  if (grant.approvals.some((a) => sameIdentity(a.approver.id, approver.id))) {
    reasons.push({
      code: 'DUPLICATE_APPROVER',
      message: `${approver.id} has already approved this case`,
      path: ['approver', 'id'],
    });
  }
  if (grant.policy.requireProvenApprovers && !proven) {
    reasons.push({
      code: 'APPROVER_NOT_PROVEN',
      message: 'this rule requires a signed identity assertion from the approver',
      path: ['assertion'],
    });
  }
  const used = new Set(grant.approvals.map((a) => a.role));
  const candidates = approver.roles.filter(
    (r) => req.roles.includes(r) && (requestedRole === undefined || r === requestedRole),
  );
  let role: string | undefined;
  if (candidates.length === 0) {
    reasons.push({
      code: 'ROLE_NOT_QUALIFIED',
      message:
        requestedRole === undefined
          ? `${approver.id} holds none of the qualifying roles (${req.roles.join(', ')})`
          : `role ${requestedRole} is not held by ${approver.id} or does not qualify (${req.roles.join(', ')})`,
      path: ['role'],
    });
  } else if (req.distinctRoles) {
    role = candidates.find((r) => !used.has(r));
    if (role === undefined) {
      reasons.push({
        code: 'ROLE_ALREADY_USED',
        message: `distinct roles are required and ${candidates.join(', ')} already approved`,
        path: ['role'],
      });
    }
  } else role = candidates[0];
  if (reasons.length > 0 || role === undefined) return { allowed: false, reasons };
  return {
    allowed: true,
    reasons: [{ code: 'APPROVER_QUALIFIED', message: `${approver.id} approves as ${role}` }],
    value: { role },
  };
}

/**
 * True when the approvals recorded satisfy the snapshot's quorum (and distinct roles). For an
 * extension of a rule with `extension.requiresApproval` pass `extension: true`: it needs at least
 * one qualifying approval, also where the case itself needed none (a pre-approved template's snapshot
 * counts 0, but its rule's approver roles still say who may approve).
 */
export function quorumMet(
  policy: PolicySnapshot,
  approvals: readonly Approval[],
  options: { extension?: boolean } = {},
): boolean {
  const req =
    options.extension && policy.approvals.count < 1 ? { ...policy.approvals, count: 1 } : policy.approvals;
  const qualifying = approvals.filter((a) => req.roles.includes(a.role));
  if (req.distinctRoles) return new Set(qualifying.map((a) => a.role)).size >= req.count;
  return new Set(qualifying.map((a) => foldIdentity(a.approver.id))).size >= req.count;
}

/** Parses an IPv4/IPv6 CIDR into `[address, prefix, family]`, or null. */
export function parseCidr(value: string): [string, number, 'ipv4' | 'ipv6'] | null {
  const [addr, bits, ...rest] = value.split('/');
  if (rest.length > 0 || addr === undefined || bits === undefined || !/^\d{1,3}$/.test(bits)) return null;
  const prefix = Number(bits);
  if (isIPv4(addr) && prefix <= 32) return [addr, prefix, 'ipv4'];
  if (isIPv6(addr) && prefix <= 128) return [addr, prefix, 'ipv6'];
  return null;
}

// One BlockList per distinct CIDR list (only `check` is called on it), keyed by the list's exact JSON.
const blockLists = memo((key) => {
  const list = new BlockList();
  for (const c of JSON.parse(key) as string[]) {
    const parsed = parseCidr(c);
    if (parsed) list.addSubnet(parsed[0], parsed[1], parsed[2]);
  }
  return list;
});
const blockListOf = (cidrs: readonly string[]): BlockList => blockLists(JSON.stringify(cidrs));

/** Usage event as checked against constraints. */
export interface UsageFacts {
  sourceIp: string;
  action: string;
  at: Date;
}

/**
 * Checks one usage event against the rule's constraints; any reason means a violation that revokes
 * the case with trigger `violation`.
 */
export function checkUsage(constraints: UsageConstraints | undefined, usage: UsageFacts): Decision {
  const reasons: DecisionReason[] = [];
  if (constraints?.sourceCidrs && constraints.sourceCidrs.length > 0) {
    // node's BlockList does the address arithmetic (v4, v6, v4-mapped) instead of hand-written code.
    const list = blockListOf(constraints.sourceCidrs);
    const family = isIPv6(usage.sourceIp) ? 'ipv6' : 'ipv4';
    if (!list.check(usage.sourceIp, family)) {
      reasons.push({
        code: 'SOURCE_NOT_ALLOWED',
        message: `source ${usage.sourceIp} is outside the allowed networks (${constraints.sourceCidrs.join(', ')})`,
        path: ['sourceIp'],
      });
    }
  }
  if (constraints?.actions && !globMatch(constraints.actions, usage.action)) {
    reasons.push({
      code: 'ACTION_NOT_ALLOWED',
      message: `action ${usage.action} is not allowed`,
      path: ['action'],
    });
  }
  const tw = constraints?.timeWindow;
  if (tw) {
    const day = usage.at.getUTCDay();
    const hour = usage.at.getUTCHours();
    if ((tw.days && !tw.days.includes(day)) || hour < tw.startHour || hour >= tw.endHour) {
      reasons.push({
        code: 'OUTSIDE_TIME_WINDOW',
        message: `use at ${usage.at.toISOString()} is outside the allowed window ${tw.startHour}:00-${tw.endHour}:00 UTC`,
        path: ['at'],
      });
    }
  }
  return { allowed: reasons.length === 0, reasons };
}

/** Decides whether `actor` may use break-glass under the policy. */
export function evaluateBreakGlass(
  compiled: CompiledPolicy,
  actor: Principal,
  durationSeconds: number,
  overdueReviews: number,
): Decision {
  const bg = compiled.policy.breakGlass;
  const reasons: DecisionReason[] = [];
  if (!bg)
    return {
      allowed: false,
      reasons: [{ code: 'BREAK_GLASS_DISABLED', message: 'the policy defines no break-glass path' }],
    };
  if (!actor.roles.some((r) => bg.allowedRoles.includes(r))) {
    reasons.push({
      code: 'BREAK_GLASS_ROLE',
      message: `${actor.id} holds none of the break-glass roles (${bg.allowedRoles.join(', ')})`,
      path: ['requester', 'roles'],
    });
  }
  if (durationSeconds > bg.maxDurationSeconds) {
    reasons.push({
      code: 'DURATION_EXCEEDS_MAX',
      message: `break-glass is capped at ${bg.maxDurationSeconds}s`,
      path: ['durationSeconds'],
    });
  }
  if (overdueReviews > 0) {
    reasons.push({
      code: 'BREAK_GLASS_REVIEW_OVERDUE',
      message: `${actor.id} has ${overdueReviews} break-glass case(s) whose review is overdue`,
      path: ['requester', 'id'],
    });
  }
  return reasons.length > 0
    ? { allowed: false, reasons }
    : {
        allowed: true,
        reasons: [{ code: 'BREAK_GLASS_ALLOWED', message: 'break-glass allowed; review is mandatory' }],
      };
}
