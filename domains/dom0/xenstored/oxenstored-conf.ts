// oxenstored.conf (`oxenstored --config-file FILE`, Debian's /etc/xen/oxenstored.conf): "key =
// value" lines, '#' comments. The keys xensim models map to its quotas and to the transaction
// history's window; the others are reported back so the CLI can say they are not modelled.
import type { Quotas } from './quota.ts';

export interface OxenstoredConf {
  readonly quotas: Partial<Quotas>;
  /** conflict-max-history-seconds: the transaction history's window. */
  readonly conflictMaxHistorySeconds?: number;
  /** Keys read but not modelled (their value changes nothing here). */
  readonly ignored: readonly string[];
}

/** quota-* keys of oxenstored 4.17 (define.ml) and the quota each sets. */
const QUOTA_KEYS: Readonly<Record<string, keyof Quotas>> = {
  'quota-maxentity': 'nodes',
  'quota-maxsize': 'nodeSize',
  'quota-maxwatch': 'watches',
  'quota-transaction': 'transactions',
  'quota-maxrequests': 'transactionNodes',
  'quota-path-max': 'pathMax',
  'quota-maxoutstanding': 'outstanding',
};

/** Parses the file's text; a malformed line or value is an error naming its line. */
export function parseOxenstoredConf(text: string): OxenstoredConf {
  const quotas: Partial<Quotas> = {};
  const ignored: string[] = [];
  let history: number | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const m = /^([A-Za-z0-9_.-]+)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new Error(`oxenstored.conf line ${i + 1}: not "key = value": ${raw}`);
    const [, key, value] = m;
    const quota = QUOTA_KEYS[key];
    if (quota !== undefined) {
      const n = Number(value);
      if (!Number.isInteger(n)) throw new Error(`oxenstored.conf line ${i + 1}: ${key} needs an integer, not "${value}"`);
      // oxenstored reads a negative quota as "no limit"; xensim's quotas say that with 0.
      quotas[quota] = n < 0 ? 0 : n;
    } else if (key === 'conflict-max-history-seconds') {
      const s = Number(value);
      if (!Number.isFinite(s) || s < 0) throw new Error(`oxenstored.conf line ${i + 1}: ${key} needs a non-negative number, not "${value}"`);
      history = s;
    } else {
      ignored.push(key);
    }
  });
  return { quotas, conflictMaxHistorySeconds: history, ignored };
}
