import { readFileSync } from 'node:fs';
import * as core from '@grantline/core';
import { GRANTLINE_EVENTS, type GrantlineEventName } from '@grantline/core';
import { describeExecutorConformance } from '@grantline/core/testing';
import ts from 'typescript';

/**
 * Reference sections generated from the code, so the docs list exactly what exists: the service's
 * methods and `createGrantline` options (names, signatures and JSDoc read from service.ts), the
 * emitted events (from `GRANTLINE_EVENTS`; a description is required for each by the type below) and
 * the executor kit's checks (the names of the tests it defines).
 */

/** What each emitted event means. Typed by the event union: a new event without a line fails typecheck. */
const EVENT_MEANINGS: Record<GrantlineEventName, string> = {
  'grant:requested': 'a case was opened (`requesterId`, `subjectId`)',
  'grant:approval': 'one approval was recorded (`approverId`, `role`)',
  'grant:approved': 'the quorum is met, or a template approved the request (`approvals` or `template`)',
  'grant:denied': 'an approver denied the request (`by`, `reason`)',
  'grant:cancelled': 'the request was withdrawn before issuance (`by`, `reason`)',
  'grant:expired': 'a pending request or an unused approval expired (`reason`)',
  'grant:issued': 'every target was issued (`expiresAt`, `targets` with their non-secret `ref`)',
  'issuance:failed': 'a target failed at issue; the issued ones are being rolled back (`targetId`, `error`)',
  'grant:used': 'a use was recorded (`usage`, `afterRevocation`)',
  'policy:violation':
    "a recorded use broke the rule's constraints, or a detector reported a violation (`reportViolation`, code `VIOLATION_REPORTED`); revocation follows (`reasons`)",
  'grant:revoking': 'revocation started (`trigger`, `reason`)',
  'grant:revoked': 'every target was revoked (`trigger`, `lagMs`)',
  'revocation:failed':
    'revoking a target failed with a non-retryable error or `retry.maxAttempts` times; the case is flagged `revocation.exposed` and retries go on (`targetId`, `error`, `attempts`)',
  'grant:verified': 'removal was verified for every target (`lagMs`)',
  'verification:failed':
    'verification failed `retry.maxAttempts` times (or with a non-retryable error); a target still `present` is revoked again (`targetId`, `present`, `error`)',
  'grant:failed': 'a rolled-back issuance was revoked and verified: the case ends `failed` (`lagMs`)',
  'breakglass:used':
    'a break-glass case was opened, approved at once; its review is due (`actorId`, `reviewDueAt`)',
  'review:recorded': 'the review of a break-glass case was recorded (`outcome`, `reviewer`)',
  'review:overdue': 'the review of a break-glass case is past due (`actorId`, `reviewDueAt`)',
  'grant:extended': 'live access was extended (`from`, `to`)',
};

const cell = (s: string) => s.replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim();
const code = (s: string) => `\`${cell(s)}\``;

function jsDocOf(node: ts.Node): { doc: string; throws: string[] } {
  const text = (c: string | ts.NodeArray<ts.JSDocComment> | undefined) =>
    (ts.getTextOfJSDocComment(c) ?? '').replace(/\{@link\s+([^}\s]+)\s*\}/g, '`$1`');
  const docs = ts.getJSDocCommentsAndTags(node).filter(ts.isJSDoc);
  return {
    doc: docs.map((d) => text(d.comment)).join(' '),
    throws: docs.flatMap((d) =>
      (d.tags ?? []).filter((t) => t.tagName.text === 'throws').map((t) => text(t.comment)),
    ),
  };
}

function find<T extends ts.Node>(sf: ts.SourceFile, test: (n: ts.Node) => n is T, name: string): T {
  let found: T | undefined;
  const visit = (n: ts.Node) => {
    if (test(n) && (n as unknown as { name?: ts.Identifier }).name?.text === name) found = n;
    else ts.forEachChild(n, visit);
  };
  visit(sf);
  if (!found) throw new Error(`${sf.fileName}: ${name} not found`);
  return found;
}

/** The keys of the zod input schema named after a type (`ApproveInput` → `approveInputSchema`). */
function schemaKeys(typeName: string): string[] | undefined {
  const exports = core as unknown as Record<string, unknown>;
  let s = exports[`${typeName[0]!.toLowerCase()}${typeName.slice(1)}Schema`] as
    | { _zod?: { def: { type: string; innerType?: unknown; shape?: Record<string, unknown> } } }
    | undefined;
  while (s?._zod?.def.type === 'default' || s?._zod?.def.type === 'optional')
    s = s._zod.def.innerType as typeof s;
  const shape = s?._zod?.def.shape as
    | Record<string, { safeParse(v: unknown): { success: boolean } }>
    | undefined;
  if (!shape) return undefined;
  return Object.entries(shape).map(([k, v]) => (v.safeParse(undefined).success ? `${k}?` : k));
}

function propertyMembers(members: ts.NodeArray<ts.TypeElement>): ts.PropertySignature[] {
  return members.filter(ts.isPropertySignature);
}

function signatureOf(m: ts.MethodDeclaration): { text: string; notes: string[] } {
  const notes: string[] = [];
  const params = m.parameters.map((p) => {
    const name = p.name.getText();
    const opt = p.questionToken || p.initializer ? '?' : '';
    const type = p.type;
    if (type && ts.isTypeLiteralNode(type)) {
      const props = propertyMembers(type.members);
      for (const prop of props) {
        const { doc } = jsDocOf(prop);
        if (doc) notes.push(`\`${prop.name.getText()}\`: ${doc}`);
      }
      return `{ ${props.map((x) => `${x.name.getText()}${x.questionToken ? '?' : ''}`).join(', ')} }${opt}`;
    }
    if (type && ts.isTypeReferenceNode(type) && !type.typeArguments) {
      const keys = schemaKeys(type.typeName.getText());
      if (keys) return `{ ${keys.join(', ')} }${opt}`;
    }
    return `${name}${opt}${name === 'id' ? '' : `: ${type?.getText() ?? 'unknown'}`}`;
  });
  return { text: `${m.name.getText()}(${params.join(', ')})`, notes };
}

/** The public methods and properties of the `Grantline` class, from service.ts. */
export function serviceMethodsTable(root: string): string {
  const path = `${root}/packages/core/src/service.ts`;
  const sf = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const cls = find(sf, ts.isClassDeclaration, 'Grantline');
  const rows: string[] = [];
  for (const m of cls.members) {
    const mods = ts.canHaveModifiers(m) ? (ts.getModifiers(m) ?? []) : [];
    if (
      mods.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword || x.kind === ts.SyntaxKind.ProtectedKeyword)
    )
      continue;
    const { doc, throws } = jsDocOf(m);
    const thrown = throws.length > 0 ? ` Throws ${throws.join('; ')}` : '';
    if (ts.isMethodDeclaration(m)) {
      const sig = signatureOf(m);
      const notes = sig.notes.length > 0 ? ` Options: ${sig.notes.join(' ')}` : '';
      rows.push(
        `| ${code(`.${sig.text}`)} | ${code(m.type?.getText() ?? 'void')} | ${cell(doc + notes + thrown)} |`,
      );
    } else if (ts.isPropertyDeclaration(m)) {
      rows.push(`| ${code(`.${m.name.getText()}`)} | ${code(m.type?.getText() ?? '')} | ${cell(doc)} |`);
    }
  }
  return ['| member | returns | what it does |', '| --- | --- | --- |', ...rows].join('\n');
}

/** The options of `createGrantline` (`GrantlineOptions`), nested options expanded, from service.ts. */
export function serviceOptionsTable(root: string): string {
  const path = `${root}/packages/core/src/service.ts`;
  const sf = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const rows: string[] = [];
  const add = (prefix: string, props: ts.PropertySignature[]) => {
    for (const p of props) {
      const name = `${prefix}${p.name.getText()}${p.questionToken ? '?' : ''}`;
      const type = p.type!;
      const typeText = ts.isTypeLiteralNode(type)
        ? `{ ${propertyMembers(type.members)
            .map((x) => `${x.name.getText()}${x.questionToken ? '?' : ''}`)
            .join(', ')} }`
        : type.getText();
      rows.push(`| ${code(name)} | ${code(typeText)} | ${cell(jsDocOf(p).doc)} |`);
      const ref =
        ts.isTypeReferenceNode(type) && type.typeName.getText() === 'Partial'
          ? type.typeArguments?.[0]
          : type;
      if (ref && ts.isTypeLiteralNode(ref)) add(`${name.replace('?', '')}.`, propertyMembers(ref.members));
      else if (ref && ts.isTypeReferenceNode(ref)) {
        const local = sf.statements.find(
          (s): s is ts.InterfaceDeclaration =>
            ts.isInterfaceDeclaration(s) && s.name.text === ref.typeName.getText(),
        );
        if (local) add(`${name.replace('?', '')}.`, propertyMembers(local.members));
      }
    }
  };
  add('', propertyMembers(find(sf, ts.isInterfaceDeclaration, 'GrantlineOptions').members));
  return ['| option | type | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** Every event the service emits, with its meaning and payload facts. */
export function serviceEventsTable(): string {
  return [
    '| event | when (payload facts besides `caseId` and `grant`) |',
    '| --- | --- |',
    ...GRANTLINE_EVENTS.map((e) => `| ${code(e)} | ${cell(EVENT_MEANINGS[e])} |`),
  ].join('\n');
}

/** The names of the tests `describeExecutorConformance` defines, in order. */
export function executorKitChecks(): string {
  const names: string[] = [];
  describeExecutorConformance(
    { describe: (_name, fn) => fn(), it: (name) => void names.push(name) },
    {
      name: 'docs',
      create: () => Promise.reject(new Error('not run')),
    },
  );
  return names.map((n) => `- ${n}`).join('\n');
}
