// Where a scenario comes from: the library by name (`boot-and-shutdown`), or a module of the
// user's own (`./my-race.ts`, `./races/*.ts`, `file.ts#one-of-its-scenarios`) that exports
// scenarios made with `defineScenario` from `xensim/scenario`. A user's TypeScript is loaded
// through tsx's loader, registered only when this process does not run under it already.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { findScenario } from '../../scenarios/index.ts';
import type { ScenarioDef } from './scenario.ts';

/** A scenario to run and where it came from (`file` is absolute; absent for the library's). */
export interface LoadedScenario {
  readonly def: ScenarioDef;
  readonly file?: string;
}

export class ScenarioLoadError extends Error {}

/** True for an argument that names a file rather than a library scenario. */
export function isScenarioPath(arg: string): boolean {
  const file = arg.split('#')[0];
  return /[/\\]/.test(file) || /\.(ts|mts|js|mjs)$/.test(file);
}

let tsLoader: Promise<void> | undefined;

/** Lets `import()` read TypeScript: already so under tsx (this file is .ts), else tsx's loader. */
function ensureTypeScript(): Promise<void> {
  if (import.meta.url.endsWith('.ts')) return Promise.resolve();
  tsLoader ??= import('tsx/esm/api').then((m) => void m.register());
  return tsLoader;
}

/** Whether the nearest package.json above `file` says "type": "module". */
function isEsm(file: string): boolean {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        return (JSON.parse(readFileSync(pkg, 'utf8')) as { type?: unknown }).type === 'module';
      } catch {
        return false;
      }
    }
    if (dirname(dir) === dir) return false;
  }
}

function isScenarioDef(x: unknown): x is ScenarioDef {
  return typeof x === 'object' && x !== null && typeof (x as ScenarioDef).name === 'string' && typeof (x as ScenarioDef).run === 'function';
}

const cache = new Map<string, Promise<ScenarioDef[]>>();

/** Every scenario a module exports: its default (one or an array), then its named exports. */
export function loadScenarioFile(file: string): Promise<ScenarioDef[]> {
  const abs = resolve(file);
  let p = cache.get(abs);
  if (!p) {
    p = (async () => {
      if (!existsSync(abs)) throw new ScenarioLoadError(`no such scenario file: ${abs}`);
      if (/\.(ts|js)$/.test(abs) && !isEsm(abs)) {
        throw new ScenarioLoadError(`${abs} would load as CommonJS (Node's rule for .ts/.js without "type": "module" in the nearest ` +
          'package.json); scenarios are ES modules: add "type": "module" there, or name the file .mts');
      }
      if (/\.m?ts$/.test(abs)) await ensureTypeScript();
      const mod = await import(pathToFileURL(abs).href) as Record<string, unknown>;
      const found: ScenarioDef[] = [];
      const add = (x: unknown): void => {
        if (isScenarioDef(x) && !found.includes(x)) found.push(x);
      };
      if (Array.isArray(mod.default)) mod.default.forEach(add);
      else add(mod.default);
      for (const [k, v] of Object.entries(mod)) if (k !== 'default') (Array.isArray(v) ? v : [v]).forEach(add);
      if (found.length === 0) throw new ScenarioLoadError(`${abs} exports no scenario (use defineScenario from 'xensim/scenario')`);
      for (const d of found) validate(d, abs);
      return found;
    })();
    cache.set(abs, p);
  }
  return p;
}

/** What the runner relies on, checked at load so a mistake reads as one. */
function validate(d: ScenarioDef, file: string): void {
  const where = `${file}: scenario "${d.name}"`;
  if (!/^[a-z0-9][a-z0-9-]*$/.test(d.name)) throw new ScenarioLoadError(`${where}: names are kebab-case`);
  if (d.race && (typeof d.race.id !== 'string' || d.race.id.trim() === '')) throw new ScenarioLoadError(`${where}: race.id is empty`);
  for (const [v, e] of Object.entries(d.expect ?? {})) {
    if (v !== 'fixed' && !d.variants?.[v]) throw new ScenarioLoadError(`${where}: expect names variant "${v}" it does not declare`);
    if (e !== 'pass' && e !== 'fail') throw new ScenarioLoadError(`${where}: expect.${v} is "${String(e)}", not pass or fail`);
  }
}

/** One command-line argument: a library name, a file (every scenario in it), or `file#name`. */
export async function resolveScenarioArg(arg: string): Promise<LoadedScenario[]> {
  if (!isScenarioPath(arg)) {
    const def = findScenario(arg);
    if (!def) throw new ScenarioLoadError(`no scenario "${arg}" (see: xensim list; a file needs a path, e.g. ./${arg}.ts)`);
    return [{ def }];
  }
  const [path, name] = arg.split('#');
  const file = resolve(path);
  const defs = await loadScenarioFile(file);
  if (name === undefined) return defs.map((def) => ({ def, file }));
  const def = defs.find((d) => d.name === name);
  if (!def) throw new ScenarioLoadError(`${file} has no scenario "${name}" (it has: ${defs.map((d) => d.name).join(', ')})`);
  return [{ def, file }];
}

/** The scenario a swarm job or a trace names: by file and name, or from the library. */
export async function findLoaded(name: string, file?: string): Promise<ScenarioDef | undefined> {
  if (!file) return findScenario(name);
  return (await loadScenarioFile(file)).find((d) => d.name === name);
}

/** How a command line names this scenario again (for replay commands). */
export function scenarioArg(s: { scenario: string; file?: string }): string {
  if (!s.file) return s.scenario;
  const rel = s.file;
  return `${/\s/.test(rel) ? JSON.stringify(rel) : rel}#${s.scenario}`;
}
