// `xensim ui`'s web server: node:http on the loopback, the page and its script from sim/ui/static
// (no CDN, works offline), and a JSON API over a TraceModel. Thin: parse the query, ask the
// model, answer JSON.
//
//   GET /api/meta                      title, event count, lanes, whether the host is live
//   GET /api/state?n=N                 the host after N events (and the event that got it there)
//   GET /api/ring?n=N&domid=D          guest D's xenstore ring page after N events (bytes, headers)
//   GET /api/events?from=A&to=B        events A..B-1 with sentence and lane (at most 2000)
//   GET /api/find?n=N&what=W[&dir=prev] where stepping from N to the next W stops:
//        W = event | xenstore | xenbus | hypercall
//          | path (&path=P) | state (&state=S[&device=D][&role=R]) | domain (&state=S[&domid=D])

import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Stop, type TraceModel } from './model.ts';

const STATIC: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/static/app.js': 'app.js',
  '/static/app.css': 'app.css',
};
const TYPES: Readonly<Record<string, string>> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

class BadRequest extends Error {}

function intParam(q: URLSearchParams, name: string, dflt?: number): number {
  const v = q.get(name);
  if (v === null || v === '') {
    if (dflt === undefined) throw new BadRequest(`missing ${name}`);
    return dflt;
  }
  if (!/^-?\d+$/.test(v)) throw new BadRequest(`${name} must be an integer`);
  return Number(v);
}

function stopOf(q: URLSearchParams): Stop {
  const what = q.get('what') ?? 'event';
  switch (what) {
    case 'event': case 'xenstore': case 'xenbus': case 'hypercall': return { what };
    case 'path': {
      const path = q.get('path');
      if (!path) throw new BadRequest('what=path needs path');
      return { what, path };
    }
    case 'state': return {
      what, state: intParam(q, 'state'), ...(q.get('device') ? { device: q.get('device')! } : {}), ...(q.get('role') ? { role: q.get('role')! } : {}),
    };
    case 'domain': {
      const state = q.get('state');
      if (!state) throw new BadRequest('what=domain needs state');
      return { what, state, ...(q.get('domid') ? { domid: intParam(q, 'domid') } : {}) };
    }
    default: throw new BadRequest(`unknown what=${what}`);
  }
}

function api(model: TraceModel, path: string, q: URLSearchParams): unknown {
  switch (path) {
    case '/api/meta': return { title: model.title, count: model.count, lanes: model.lanes, live: model.live };
    case '/api/state': return model.stateAt(intParam(q, 'n'));
    case '/api/ring': {
      const domid = intParam(q, 'domid');
      return model.ringPageAt(intParam(q, 'n'), domid) ?? { domid, none: true };
    }
    case '/api/events': {
      const from = intParam(q, 'from', 0);
      return model.events_(from, intParam(q, 'to', from + 100));
    }
    case '/api/find': {
      const dir = q.get('dir') === 'prev' ? 'prev' : 'next';
      return { n: model.find(intParam(q, 'n'), stopOf(q), dir) ?? null };
    }
    default: return undefined;
  }
}

export interface UiServer {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** Serves `model` on 127.0.0.1:port (0: any free port). */
export async function startUiServer(model: TraceModel, port = 0): Promise<UiServer> {
  // The page's files stay in the sources: the compiled server (dist/sim/ui) serves them from there.
  const staticDir = new URL(import.meta.url.endsWith('.ts') ? './static/' : '../../../sim/ui/static/', import.meta.url);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    const file = STATIC[url.pathname];
    if (file) {
      const body = await readFile(new URL(file, staticDir));
      res.writeHead(200, { 'content-type': TYPES[file.split('.').pop()!], 'cache-control': 'no-store' }).end(body);
      return;
    }
    try {
      const out = api(model, url.pathname, url.searchParams);
      if (out === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no ${url.pathname}` }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
    } catch (e) {
      if (!(e instanceof BadRequest)) throw e;
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: e.message }));
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}/`,
    server,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
