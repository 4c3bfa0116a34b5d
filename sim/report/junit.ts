// Scenario results as JUnit XML, the report CI systems (GitLab, Jenkins, GitHub annotators) read:
// <testsuites>/<testsuite>/<testcase>, with XTF's FAILURE as <failure>, ERROR and CRASH as <error>
// (the test could not judge what it tests) and SKIP as <skipped>. A case's replay command goes
// into both its failure text and its output, where the CI pages show it.
//
// Pure: the XML as a string; the same results give the same bytes (no timestamps, no host name).

import { XtfResult } from './xtf.ts';

export interface JUnitCase {
  readonly name: string;
  readonly classname: string;
  readonly timeSeconds: number;
  readonly result: XtfResult;
  /** Why it did not succeed (or why it was skipped). */
  readonly message?: string;
  /** What the run printed: console lines, trace excerpts. */
  readonly output?: string;
  /** How to run it again, e.g. the command with its seed. */
  readonly replay?: string;
}

export interface JUnitSuite {
  readonly name: string;
  readonly cases: readonly JUnitCase[];
}

export interface JUnitOptions {
  /** The name attribute of <testsuites>. */
  readonly name?: string;
}

/**
 * Removes what XML 1.0 cannot carry at all, even as a character reference: C0 controls other than
 * tab, LF and CR, lone surrogates, U+FFFE and U+FFFF.
 */
export function stripIllegalXmlChars(s: string): string {
  return s.replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '');
}

/**
 * Character data: '>' too, so a "]]>" in output cannot end anything, and CR as a reference, or
 * the parser's end-of-line handling would read it (and CR LF) as LF.
 */
export function xmlText(s: string): string {
  return stripIllegalXmlChars(s).replace(/[&<>\r]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&#13;'));
}

/** A double-quoted attribute value; tab and LF as references too, or a parser would turn them into spaces. */
export function xmlAttr(s: string): string {
  return xmlText(s).replace(/["\t\n]/g, (c) => (c === '"' ? '&quot;' : `&#${c.charCodeAt(0)};`));
}

const seconds = (t: number): string => (Number.isFinite(t) && t > 0 ? t.toFixed(3) : '0.000');

interface Counts { tests: number; failures: number; errors: number; skipped: number; time: number }

function count(cases: readonly JUnitCase[]): Counts {
  const c: Counts = { tests: 0, failures: 0, errors: 0, skipped: 0, time: 0 };
  for (const k of cases) {
    c.tests++;
    if (k.result === XtfResult.FAILURE) c.failures++;
    else if (k.result === XtfResult.ERROR || k.result === XtfResult.CRASH) c.errors++;
    else if (k.result === XtfResult.SKIP) c.skipped++;
    if (Number.isFinite(k.timeSeconds) && k.timeSeconds > 0) c.time += k.timeSeconds;
  }
  return c;
}

const countAttrs = (c: Counts): string =>
  `tests="${c.tests}" failures="${c.failures}" errors="${c.errors}" skipped="${c.skipped}" time="${seconds(c.time)}"`;

function testcase(k: JUnitCase): string[] {
  const open = `    <testcase name="${xmlAttr(k.name)}" classname="${xmlAttr(k.classname)}" time="${seconds(k.timeSeconds)}"`;
  const body: string[] = [];
  const msg = k.message !== undefined ? ` message="${xmlAttr(k.message)}"` : '';
  const detail = [k.message, k.replay !== undefined ? `replay: ${k.replay}` : undefined].filter((x) => x !== undefined).join('\n');
  switch (k.result) {
    case XtfResult.SUCCESS:
      break;
    case XtfResult.SKIP:
      body.push(`      <skipped${msg}/>`);
      break;
    case XtfResult.FAILURE:
      body.push(`      <failure${msg} type="FAILURE">${xmlText(detail)}</failure>`);
      break;
    case XtfResult.ERROR:
    case XtfResult.CRASH:
      body.push(`      <error${msg} type="${k.result}">${xmlText(detail)}</error>`);
      break;
  }
  const out = [k.output, k.replay !== undefined ? `replay: ${k.replay}` : undefined].filter((x) => x !== undefined).join('\n');
  if (out !== '') body.push(`      <system-out>${xmlText(out)}</system-out>`);
  return body.length === 0 ? [`${open}/>`] : [`${open}>`, ...body, '    </testcase>'];
}

export function toJUnitXml(suites: readonly JUnitSuite[], opts: JUnitOptions = {}): string {
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const total = count(suites.flatMap((s) => s.cases));
  lines.push(`<testsuites${opts.name !== undefined ? ` name="${xmlAttr(opts.name)}"` : ''} ${countAttrs(total)}>`);
  for (const s of suites) {
    const head = `  <testsuite name="${xmlAttr(s.name)}" ${countAttrs(count(s.cases))}`;
    if (s.cases.length === 0) {
      lines.push(`${head}/>`);
      continue;
    }
    lines.push(`${head}>`);
    for (const k of s.cases) lines.push(...testcase(k));
    lines.push('  </testsuite>');
  }
  lines.push('</testsuites>');
  return `${lines.join('\n')}\n`;
}
