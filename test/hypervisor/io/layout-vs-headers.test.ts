// The TypeScript wire layouts against Xen's own public headers: a small C program, compiled with
// gcc against /usr/include/xen (Debian's libxen-dev), prints sizeof/offsetof of every struct
// field and the value of every constant the io/*.ts modules define, and each must agree.
// A missing compiler or header fails the suite (never skips): CI installs both.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as blkif from '../../../hypervisor/public/io/blkif.ts';
import * as cons from '../../../hypervisor/public/io/console.ts';
import * as netif from '../../../hypervisor/public/io/netif.ts';
import { SringHeader, ringSize } from '../../../hypervisor/public/io/ring.ts';

const HEADERS = '/usr/include/xen/io';
const INSTALL = 'install gcc and libxen-dev: apt-get install -y --no-install-recommends gcc libxen-dev';

/** offsetof(T, f) for each field, printed as `<label>.<f>`, plus `<label>.sizeof` unless told. */
const struct = (label: string, type: string, fields: readonly string[], withSizeof = true): string =>
  [...(withSizeof ? [`  P("${label}.sizeof", sizeof(${type}));`] : []),
    ...fields.map((f) => `  P("${label}.${f}", offsetof(${type}, ${f}));`)].join('\n');

function program(consoleHasConnection: boolean): string {
  // No sizeof: the sring struct declares a one-entry ring[] that the page really extends.
  const ringHeader = (s: string) => struct(s, `struct ${s}`, ['req_prod', 'req_event', 'rsp_prod', 'rsp_event', 'pvt', '__pad', 'ring'], false);
  const consts = (names: readonly string[]) => names.map((n) => `  P("${n}", ${n});`).join('\n');
  return `#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/console.h>
#include <xen/io/protocols.h>

#define P(name, v) printf("%s %lld\\n", name, (long long)(v))
#define S(name, v) printf("%s %s\\n", name, v)

/* __RING_SIZE takes a real sring pointer; give it a page-aligned buffer of 4 pages. */
static union { char bytes[4 * 4096]; uint64_t align; } pages;

int main(void) {
${struct('blkif_request', 'blkif_request_t', ['operation', 'nr_segments', 'handle', 'id', 'sector_number', 'seg'])}
${struct('blkif_request_segment', 'struct blkif_request_segment', ['gref', 'first_sect', 'last_sect'])}
${struct('blkif_request_discard', 'struct blkif_request_discard', ['operation', 'flag', 'handle', 'id', 'sector_number', 'nr_sectors'])}
${struct('blkif_request_indirect', 'struct blkif_request_indirect', ['operation', 'indirect_op', 'nr_segments', 'id', 'sector_number', 'handle', 'indirect_grefs'])}
${struct('blkif_response', 'blkif_response_t', ['id', 'operation', 'status'])}
${struct('netif_tx_request', 'netif_tx_request_t', ['gref', 'offset', 'flags', 'id', 'size'])}
${struct('netif_tx_response', 'netif_tx_response_t', ['id', 'status'])}
${struct('netif_rx_request', 'netif_rx_request_t', ['id', 'pad', 'gref'])}
${struct('netif_rx_response', 'netif_rx_response_t', ['id', 'offset', 'flags', 'status'])}
${struct('netif_extra_info', 'struct netif_extra_info', ['type', 'flags', 'u', 'u.gso.size', 'u.gso.type', 'u.gso.pad', 'u.gso.features', 'u.mcast.addr', 'u.hash.type', 'u.hash.algorithm', 'u.hash.value'])}
${struct('xencons_interface', 'struct xencons_interface', ['in', 'out', 'in_cons', 'in_prod', 'out_cons', 'out_prod', ...(consoleHasConnection ? ['connection'] : [])])}
${ringHeader('blkif_sring')}
${ringHeader('netif_tx_sring')}
${ringHeader('netif_rx_sring')}
  P("blkif_entry.sizeof", sizeof(union blkif_sring_entry));
  P("netif_tx_entry.sizeof", sizeof(union netif_tx_sring_entry));
  P("netif_rx_entry.sizeof", sizeof(union netif_rx_sring_entry));
  P("ring_size.blkif.1", __CONST_RING_SIZE(blkif, 4096));
  P("ring_size.netif_tx.1", __CONST_RING_SIZE(netif_tx, 4096));
  P("ring_size.netif_rx.1", __CONST_RING_SIZE(netif_rx, 4096));
  {
    struct blkif_sring *b = (struct blkif_sring *)pages.bytes;
    struct netif_tx_sring *t = (struct netif_tx_sring *)pages.bytes;
    struct netif_rx_sring *r = (struct netif_rx_sring *)pages.bytes;
    P("ring_size.blkif.2", __RING_SIZE(b, 2 * 4096));
    P("ring_size.blkif.4", __RING_SIZE(b, 4 * 4096));
    P("ring_size.netif_tx.2", __RING_SIZE(t, 2 * 4096));
    P("ring_size.netif_rx.4", __RING_SIZE(r, 4 * 4096));
  }
${consts([
  'BLKIF_OP_READ', 'BLKIF_OP_WRITE', 'BLKIF_OP_WRITE_BARRIER', 'BLKIF_OP_FLUSH_DISKCACHE', 'BLKIF_OP_RESERVED_1',
  'BLKIF_OP_DISCARD', 'BLKIF_OP_INDIRECT', 'BLKIF_RSP_OKAY', 'BLKIF_RSP_ERROR', 'BLKIF_RSP_EOPNOTSUPP',
  'BLKIF_MAX_SEGMENTS_PER_REQUEST', 'BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST', 'BLKIF_DISCARD_SECURE',
  'VDISK_CDROM', 'VDISK_REMOVABLE', 'VDISK_READONLY',
  'NETTXF_csum_blank', 'NETTXF_data_validated', 'NETTXF_more_data', 'NETTXF_extra_info',
  'NETRXF_data_validated', 'NETRXF_csum_blank', 'NETRXF_more_data', 'NETRXF_extra_info', 'NETRXF_gso_prefix',
  'NETIF_RSP_DROPPED', 'NETIF_RSP_ERROR', 'NETIF_RSP_OKAY', 'NETIF_RSP_NULL',
  'XEN_NETIF_NR_SLOTS_MIN', 'XEN_NETIF_MAX_TX_SIZE', 'XEN_NETIF_EXTRA_FLAG_MORE', 'XEN_NETIF_EXTRA_TYPE_NONE',
  'XEN_NETIF_EXTRA_TYPE_GSO', 'XEN_NETIF_EXTRA_TYPE_MCAST_ADD', 'XEN_NETIF_EXTRA_TYPE_MCAST_DEL',
  'XEN_NETIF_EXTRA_TYPE_HASH', 'XEN_NETIF_EXTRA_TYPE_MAX',
  'XEN_NETIF_GSO_TYPE_NONE', 'XEN_NETIF_GSO_TYPE_TCPV4', 'XEN_NETIF_GSO_TYPE_TCPV6',
])}
  P("blkif_segs_per_indirect_frame", 4096 / sizeof(struct blkif_request_segment));
  S("XEN_IO_PROTO_ABI_X86_32", XEN_IO_PROTO_ABI_X86_32);
  S("XEN_IO_PROTO_ABI_X86_64", XEN_IO_PROTO_ABI_X86_64);
  S("XEN_IO_PROTO_ABI_ARM", XEN_IO_PROTO_ABI_ARM);
  S("XEN_IO_PROTO_ABI_NATIVE", XEN_IO_PROTO_ABI_NATIVE);
  return 0;
}
`;
}

/** Compiles and runs the probe; returns its `name value` lines as a map. */
function probeHeaders(): { values: Map<string, string>; consoleHasConnection: boolean } {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`gcc is not runnable (${(e as Error).message}); ${INSTALL}`);
  }
  for (const h of ['ring.h', 'blkif.h', 'netif.h', 'console.h', 'protocols.h']) {
    if (!existsSync(join(HEADERS, h))) throw new Error(`Xen public header ${join(HEADERS, h)} is missing (Debian package libxen-dev); ${INSTALL}`);
  }
  const consoleHasConnection = /\bconnection\b/.test(readFileSync(join(HEADERS, 'console.h'), 'latin1'));
  const dir = mkdtempSync(join(tmpdir(), 'xensim-layout-'));
  try {
    const src = join(dir, 'layout.c');
    const exe = join(dir, 'layout');
    writeFileSync(src, program(consoleHasConnection));
    try {
      execFileSync('gcc', ['-std=gnu11', '-Wall', '-Werror', '-o', exe, src], { stdio: 'pipe' });
    } catch (e) {
      const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
      throw new Error(`compiling the layout probe against ${HEADERS} failed (${INSTALL}):\n${stderr}`);
    }
    const out = execFileSync(exe, { encoding: 'latin1' });
    const values = new Map<string, string>();
    for (const line of out.split('\n')) {
      const sp = line.indexOf(' ');
      if (sp > 0) values.set(line.slice(0, sp), line.slice(sp + 1));
    }
    return { values, consoleHasConnection };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Offsets of a TS layout record, keyed like the probe prints them (SIZE becomes sizeof). */
function layout(label: string, rec: Readonly<Record<string, number>>, prefix = ''): [string, number][] {
  return Object.entries(rec).map(([k, v]) => [k === 'SIZE' ? `${label}.sizeof` : `${label}.${prefix}${k}`, v]);
}

const SRING: Record<string, number> = { ...SringHeader };

const GROUPS: readonly { name: string; rows: readonly [string, number | string][] }[] = [
  {
    name: 'blkif structs',
    rows: [
      ...layout('blkif_request', blkif.BlkifRequest),
      ...layout('blkif_request_segment', blkif.BlkifRequestSegment),
      ...layout('blkif_request_discard', blkif.BlkifRequestDiscard),
      ...layout('blkif_request_indirect', blkif.BlkifRequestIndirect),
      ...layout('blkif_response', blkif.BlkifResponse),
    ],
  },
  {
    name: 'netif structs',
    rows: [
      ...layout('netif_tx_request', netif.NetifTxRequest),
      ...layout('netif_tx_response', netif.NetifTxResponse),
      ...layout('netif_rx_request', netif.NetifRxRequest),
      ...layout('netif_rx_response', netif.NetifRxResponse),
      ...layout('netif_extra_info', netif.NetifExtraInfo),
      ...layout('netif_extra_info', netif.NetifExtraInfoGso, 'u.gso.'),
      ...layout('netif_extra_info', netif.NetifExtraInfoMcast, 'u.mcast.'),
      ...layout('netif_extra_info', netif.NetifExtraInfoHash, 'u.hash.'),
    ],
  },
  {
    name: 'struct xencons_interface',
    rows: layout('xencons_interface', Object.fromEntries(
      Object.entries(cons.XenconsInterface).filter(([k]) => k !== 'connection'),
    )),
  },
  {
    name: 'shared ring header and entry sizes',
    rows: [
      ...layout('blkif_sring', SRING),
      ...layout('netif_tx_sring', SRING),
      ...layout('netif_rx_sring', SRING),
      ['blkif_entry.sizeof', blkif.BLKIF_RING_ENTRY_SIZE],
      ['netif_tx_entry.sizeof', netif.NET_TX_RING_ENTRY_SIZE],
      ['netif_rx_entry.sizeof', netif.NET_RX_RING_ENTRY_SIZE],
    ],
  },
  {
    name: 'ring sizes (__CONST_RING_SIZE, __RING_SIZE)',
    rows: [
      ['ring_size.blkif.1', blkif.BLKIF_RING_SIZE],
      ['ring_size.netif_tx.1', netif.NET_TX_RING_SIZE],
      ['ring_size.netif_rx.1', netif.NET_RX_RING_SIZE],
      ['ring_size.blkif.2', ringSize(blkif.BLKIF_RING_ENTRY_SIZE, 2)],
      ['ring_size.blkif.4', ringSize(blkif.BLKIF_RING_ENTRY_SIZE, 4)],
      ['ring_size.netif_tx.2', ringSize(netif.NET_TX_RING_ENTRY_SIZE, 2)],
      ['ring_size.netif_rx.4', ringSize(netif.NET_RX_RING_ENTRY_SIZE, 4)],
    ],
  },
  {
    name: 'blkif constants',
    rows: [
      ...Object.entries(blkif.BlkifOp).filter(([, v]) => typeof v === 'number') as [string, number][],
      ...Object.entries(blkif.BlkifRsp).filter(([, v]) => typeof v === 'number') as [string, number][],
      ['BLKIF_MAX_SEGMENTS_PER_REQUEST', blkif.BLKIF_MAX_SEGMENTS_PER_REQUEST],
      ['BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST', blkif.BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
      ['blkif_segs_per_indirect_frame', blkif.BLKIF_SEGS_PER_INDIRECT_FRAME],
      ['BLKIF_DISCARD_SECURE', blkif.BLKIF_DISCARD_SECURE],
      ['VDISK_CDROM', blkif.VDISK_CDROM],
      ['VDISK_REMOVABLE', blkif.VDISK_REMOVABLE],
      ['VDISK_READONLY', blkif.VDISK_READONLY],
      ['XEN_IO_PROTO_ABI_X86_32', blkif.XEN_IO_PROTO_ABI_X86_32],
      ['XEN_IO_PROTO_ABI_X86_64', blkif.XEN_IO_PROTO_ABI_X86_64],
      ['XEN_IO_PROTO_ABI_ARM', blkif.XEN_IO_PROTO_ABI_ARM],
      ['XEN_IO_PROTO_ABI_NATIVE', blkif.XEN_IO_PROTO_ABI_NATIVE],
    ],
  },
  {
    name: 'netif constants',
    rows: [
      ...(['NETTXF_csum_blank', 'NETTXF_data_validated', 'NETTXF_more_data', 'NETTXF_extra_info',
        'NETRXF_data_validated', 'NETRXF_csum_blank', 'NETRXF_more_data', 'NETRXF_extra_info', 'NETRXF_gso_prefix',
        'XEN_NETIF_NR_SLOTS_MIN', 'XEN_NETIF_MAX_TX_SIZE', 'XEN_NETIF_EXTRA_FLAG_MORE', 'XEN_NETIF_EXTRA_TYPE_MAX',
      ] as const).map((n): [string, number] => [n, netif[n]]),
      ...Object.entries(netif.NetifRsp).filter(([, v]) => typeof v === 'number') as [string, number][],
      ...Object.entries(netif.XenNetifExtraType).filter(([, v]) => typeof v === 'number') as [string, number][],
      ...Object.entries(netif.XenNetifGsoType).filter(([, v]) => typeof v === 'number') as [string, number][],
    ],
  },
];

describe('wire layouts agree with the Xen public headers (gcc + /usr/include/xen from libxen-dev)', function () {
  let probe: ReturnType<typeof probeHeaders>;

  before(() => {
    probe = probeHeaders();
  });

  for (const g of GROUPS) {
    it(`${g.name}: ${g.rows.length} values`, () => {
      const want = new Map<string, string>();
      const got = new Map<string, string>();
      for (const [k, v] of g.rows) {
        assert.ok(probe.values.has(k), `the header probe printed no ${k}`);
        want.set(k, probe.values.get(k)!);
        got.set(k, String(v));
      }
      assert.deepEqual(got, want);
    });
  }

  it('every value the probe printed was compared', () => {
    const compared = new Set(GROUPS.flatMap((g) => g.rows.map(([k]) => k)));
    const extra = [...probe.values.keys()].filter((k) => !compared.has(k) && k !== 'xencons_interface.connection' && k !== 'xencons_interface.sizeof');
    assert.deepEqual(extra, []);
  });

  it('xencons_interface.connection sits at 3088: the header\'s field, or (older headers) right past the struct', () => {
    const key = probe.consoleHasConnection ? 'xencons_interface.connection' : 'xencons_interface.sizeof';
    assert.equal(probe.values.get(key), String(cons.XenconsInterface.connection));
  });
});
