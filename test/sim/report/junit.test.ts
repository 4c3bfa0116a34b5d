// JUnit XML: the CI report of scenario runs. Checked twice: a strict well-formedness check written
// here (fast-xml-parser is lenient about stray '<' and control characters), then a parse back
// with fast-xml-parser to compare what a CI system would read with what went in.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XMLParser } from 'fast-xml-parser';
import { type JUnitSuite, stripIllegalXmlChars, toJUnitXml } from '../../../sim/report/junit.ts';
import { XtfResult } from '../../../sim/report/xtf.ts';

/** XML 1.0's Char production. */
const CHAR = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
const REF = '&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);';
const NAME = '[A-Za-z_][A-Za-z0-9_.-]*';
const ATTR = new RegExp(`^\\s+(${NAME})="((?:[^"<&]|${REF})*)"`);
const TEXT = new RegExp(`^(?:[^<&]|${REF})+`);

/** Throws unless the document is well-formed XML 1.0 (for the subset this writer uses). */
function assertWellFormed(xml: string): void {
  assert.ok(CHAR.test(xml), 'only XML 1.0 characters');
  let rest = xml.replace(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n/, '');
  assert.notEqual(rest, xml, 'XML declaration first');
  const open: string[] = [];
  let roots = 0;
  while (rest.length > 0) {
    if (rest.startsWith('</')) {
      const m = new RegExp(`^</(${NAME})>`).exec(rest);
      assert.ok(m, `bad end tag at ${rest.slice(0, 30)}`);
      assert.equal(m[1], open.pop(), 'end tag matches its start');
      rest = rest.slice(m[0].length);
    } else if (rest.startsWith('<')) {
      const m = new RegExp(`^<(${NAME})`).exec(rest);
      assert.ok(m, `bad start tag at ${rest.slice(0, 30)}`);
      if (open.length === 0) roots++;
      rest = rest.slice(m[0].length);
      const names = new Set<string>();
      for (let a = ATTR.exec(rest); a; a = ATTR.exec(rest)) {
        assert.ok(!names.has(a[1]), `attribute ${a[1]} once`);
        names.add(a[1]);
        rest = rest.slice(a[0].length);
      }
      if (rest.startsWith('/>')) rest = rest.slice(2);
      else if (rest.startsWith('>')) {
        open.push(m[1]);
        rest = rest.slice(1);
      } else assert.fail(`bad attribute at ${rest.slice(0, 30)}`);
    } else {
      const m = TEXT.exec(rest);
      assert.ok(m, `bad character data at ${rest.slice(0, 30)}`);
      assert.ok(!m[0].includes(']]>'), 'no ]]> in character data');
      assert.ok(open.length > 0 || m[0].trim() === '', 'no text outside the root');
      rest = rest.slice(m[0].length);
    }
  }
  assert.deepEqual(open, [], 'every element closed');
  assert.equal(roots, 1, 'one root element');
}

const parser = new XMLParser({
  ignoreAttributes: false, attributeNamePrefix: '', parseTagValue: false, parseAttributeValue: false, trimValues: false,
  htmlEntities: true, isArray: (name) => name === 'testsuite' || name === 'testcase',
});
type Node = Record<string, unknown> & { '#text'?: string };
const read = (xml: string): { testsuites: Node & { testsuite?: (Node & { testcase?: Node[] })[] } } => {
  assertWellFormed(xml);
  return parser.parse(xml) as never;
};

const SUITES: JUnitSuite[] = [
  {
    name: 'handshake',
    cases: [
      { name: 'vbd connects', classname: 'xensim.vbd', timeSeconds: 0.25, result: XtfResult.SUCCESS },
      { name: 'vbd survives EAGAIN', classname: 'xensim.vbd', timeSeconds: 1.5, result: XtfResult.FAILURE, message: 'state stuck at InitWait', output: 'dom1: blkfront waiting', replay: 'xensim run vbd-eagain --seed 42' },
      { name: 'vif', classname: 'xensim.vif', timeSeconds: 0, result: XtfResult.SKIP, message: 'netback not modelled yet' },
    ],
  },
  {
    name: 'faults',
    cases: [
      { name: 'xenstored restart', classname: 'xensim.faults', timeSeconds: 2, result: XtfResult.ERROR, message: 'scenario script threw' },
      { name: 'guest dies', classname: 'xensim.faults', timeSeconds: 3, result: XtfResult.CRASH, message: 'no result', replay: 'xensim run guest-dies --seed 7' },
    ],
  },
];

describe('junit xml', () => {
  it('is well-formed XML with testsuites > testsuite > testcase, counts per suite and in total', () => {
    const doc = read(toJUnitXml(SUITES, { name: 'xensim' }));
    const root = doc.testsuites;
    assert.deepEqual([root.name, root.tests, root.failures, root.errors, root.skipped, root.time], ['xensim', '5', '1', '2', '1', '6.750']);
    const [a, b] = root.testsuite!;
    assert.deepEqual([a.name, a.tests, a.failures, a.errors, a.skipped, a.time], ['handshake', '3', '1', '0', '1', '1.750']);
    assert.deepEqual([b.name, b.tests, b.failures, b.errors, b.skipped, b.time], ['faults', '2', '0', '2', '0', '5.000']);
    assert.deepEqual(a.testcase!.map((c) => [c.name, c.classname, c.time]), [
      ['vbd connects', 'xensim.vbd', '0.250'], ['vbd survives EAGAIN', 'xensim.vbd', '1.500'], ['vif', 'xensim.vif', '0.000'],
    ]);
  });

  it('FAILURE is <failure>, ERROR and CRASH are <error> (typed), SKIP is <skipped>, SUCCESS is bare', () => {
    const [a, b] = read(toJUnitXml(SUITES)).testsuites.testsuite!;
    const [ok, fail, skip] = a.testcase!;
    const [err, crash] = b.testcase!;
    assert.deepEqual(Object.keys(ok).sort(), ['classname', 'name', 'time']);
    assert.deepEqual(fail.failure, { message: 'state stuck at InitWait', type: 'FAILURE', '#text': 'state stuck at InitWait\nreplay: xensim run vbd-eagain --seed 42' });
    assert.deepEqual(skip.skipped, { message: 'netback not modelled yet' });
    assert.deepEqual(err.error, { message: 'scenario script threw', type: 'ERROR', '#text': 'scenario script threw' });
    assert.deepEqual((crash.error as Node).type, 'CRASH');
    assert.equal(fail.failure !== undefined && err.failure === undefined && crash.failure === undefined, true);
  });

  it('a case\'s output, then its replay command, are its system-out', () => {
    const [a, b] = read(toJUnitXml(SUITES)).testsuites.testsuite!;
    assert.equal(a.testcase![1]['system-out'], 'dom1: blkfront waiting\nreplay: xensim run vbd-eagain --seed 42');
    assert.equal(b.testcase![1]['system-out'], 'replay: xensim run guest-dies --seed 7');
    assert.equal(a.testcase![0]['system-out'], undefined);
  });

  it('escapes markup in names, messages and output, and keeps newlines and tabs in attributes', () => {
    const nasty = 'a<b>&c"d\'e ]]> f\tg\nh';
    const doc = read(toJUnitXml([{ name: nasty, cases: [{ name: nasty, classname: nasty, timeSeconds: 1, result: XtfResult.FAILURE, message: nasty, output: nasty, replay: nasty }] }], { name: nasty }));
    const suite = doc.testsuites.testsuite![0];
    const c = suite.testcase![0];
    assert.deepEqual([doc.testsuites.name, suite.name, c.name, c.classname, (c.failure as Node).message], [nasty, nasty, nasty, nasty, nasty]);
    assert.equal((c.failure as Node)['#text'], `${nasty}\nreplay: ${nasty}`);
    assert.equal(c['system-out'], `${nasty}\nreplay: ${nasty}`);
  });

  it('strips what XML 1.0 cannot carry (NUL, other C0 controls, lone surrogates, U+FFFE/FFFF), keeps the rest', () => {
    assert.equal(stripIllegalXmlChars('a\u0000b\u0001c\u001bd\ud800e\uffffé\u{1F600}\t\n\r'), 'abcdeé\u{1F600}\t\n\r');
    const xml = toJUnitXml([{ name: 's', cases: [{ name: 'x\u0000y', classname: 'c', timeSeconds: 0, result: XtfResult.CRASH, message: 'console: \u001b[31mred', output: 'bytes \u0000\u0002 end' }] }]);
    const c = read(xml).testsuites.testsuite![0].testcase![0];
    assert.equal(c.name, 'xy');
    assert.equal((c.error as Node).message, 'console: [31mred');
    assert.equal(c['system-out'], 'bytes  end');
  });

  it('any text stays well-formed and reads back as the text less what XML cannot carry (property)', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 60 }), fc.constantFrom(...Object.values(XtfResult)), (s, result) => {
      const xml = toJUnitXml([{ name: s, cases: [{ name: s, classname: s, timeSeconds: 1, result, message: s, output: s }] }]);
      const c = read(xml).testsuites.testsuite![0].testcase![0];
      const want = stripIllegalXmlChars(s);
      assert.equal(c.name, want);
      assert.equal(c['system-out'] ?? '', want);
    }), { numRuns: 300, seed: 11 });
  });

  it('odd times read as 0; no suites and empty suites are still valid reports; output is deterministic', () => {
    const xml = toJUnitXml([{ name: 'empty', cases: [] }, { name: 't', cases: [{ name: 'n', classname: 'c', timeSeconds: Number.NaN, result: XtfResult.SUCCESS }] }]);
    const doc = read(xml);
    assert.equal(doc.testsuites.testsuite![0].tests, '0');
    assert.equal(doc.testsuites.testsuite![1].testcase![0].time, '0.000');
    read(toJUnitXml([]));
    assert.equal(toJUnitXml(SUITES), toJUnitXml(SUITES));
  });
});
