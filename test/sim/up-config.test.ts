// Host and guest configuration files (sim/config.ts) and how `xensim up CONFIG` picks its mode:
// the shipped example parses to the guests it describes; every bad field is named with its file,
// line and path; `xensim up` prints such an error as one message, not a stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadHostConfig, parseDiskSpec, parseGuestFile, parseHostConfig, parseVifSpec } from '../../sim/config.ts';
import { upMode } from '../../sim/up.ts';
import { REPO_ROOT } from '../helpers/daemons.ts';
import { HANG_MS } from '../helpers/wait.ts';

/** The ConfigError's message for `text` as a host config named h.yaml. */
function hostError(text: string): string {
  try {
    parseHostConfig(text, 'h.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, not ${String(e)}`);
    return e.message;
  }
  assert.fail(`accepted:\n${text}`);
}

function guestError(text: string): string {
  try {
    parseGuestFile(text, 'g.cfg');
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, not ${String(e)}`);
    return e.message;
  }
  assert.fail(`accepted:\n${text}`);
}

describe('host config (sim/config.ts)', () => {
  it('scenarios/hosts/three-guests.yaml: three guests, two disks and one NIC each', () => {
    const cfg = loadHostConfig(path.join(REPO_ROOT, 'scenarios/hosts/three-guests.yaml'));
    assert.equal(cfg.seed, 42);
    assert.deepEqual(cfg.guests.map((g) => g.name), ['web', 'db', 'cache']);
    for (const g of cfg.guests) {
      assert.equal(g.disks?.length, 2, g.name);
      assert.deepEqual(g.disks.map((d) => d.vdev), ['xvda', 'xvdb']);
      assert.equal(g.vifs?.length, 1, g.name);
      assert.equal(g.vifs[0].bridge, 'xenbr0');
    }
    assert.deepEqual(cfg.guests[0], {
      name: 'web', memory: 256, vcpus: 1, type: 'pv', vifs: [{ bridge: 'xenbr0' }],
      disks: [{ vdev: 'xvda', target: 'web-root', sizeMiB: 64 }, { vdev: 'xvdb', target: 'web-data', sizeMiB: 16 }],
    });
    assert.equal(cfg.guests[1].vifs?.[0].mac, '00:16:3e:00:00:22');
    assert.equal(cfg.guests[2].disks?.[1].mode, 'r');
  });

  it('a minimal config: guests default to none, the rest to the toolstack\'s defaults', () => {
    assert.deepEqual(parseHostConfig('mode: lockstep\n'), { mode: 'lockstep', guests: [] });
    assert.deepEqual(parseHostConfig('guests:\n  - name: a\n').guests, [{ name: 'a' }]);
  });

  it('a bad field is named with file, line, path, what was expected and what it got', () => {
    assert.equal(hostError('guests:\n  - name: a\n    memory: lots\n'),
      'h.yaml:3: guests[0].memory: expected a size in MiB, 1 or more, got "lots"');
    assert.equal(hostError('guests:\n  - name: a\n  - name: b\n    vcpus: 0\n'),
      'h.yaml:4: guests[1].vcpus: expected a vCPU count, 1 to 128, got 0');
    assert.equal(hostError('guests:\n  - name: a\n    disks:\n      - { vdev: floppy, target: x }\n'),
      'h.yaml:4: guests[0].disks[0].vdev: expected a virtual device name (xvda, sdb, hdc, d0p1 or a number), got "floppy"');
    assert.equal(hostError('guests:\n  - name: a\n    vifs: [{ mac: "00:16:3e" }]\n'),
      'h.yaml:3: guests[0].vifs[0].mac: expected a MAC address such as 00:16:3e:00:00:01, got "00:16:3e"');
    assert.equal(hostError('mode: fast\n'), 'h.yaml:1: mode: expected free or lockstep, got "fast"');
    assert.equal(hostError('guests:\n  - memory: 5\n'), 'h.yaml:2: guests[0].name: missing (a domain name)');
    assert.equal(hostError('guests:\n  - name: a\n    on_crash: explode\n'),
      'h.yaml:3: guests[0].on_crash: expected destroy, restart or preserve, got "explode"');
  });

  it('unknown fields, duplicate names and domids, clashing devices are errors, each on its own line', () => {
    assert.equal(hostError('guests:\n  - name: a\n    memroy: 5\n'), 'h.yaml:3: guests[0].memroy: unknown field');
    assert.equal(hostError('seed: 1\nguest: []\n'), 'h.yaml:2: guest: unknown field');
    assert.equal(hostError('guests:\n  - { name: a, domid: 7 }\n  - { name: a, domid: 7 }\n'),
      'h.yaml:3: guests[1].name: guests[0] has this name already\nh.yaml:3: guests[1].domid: guests[0] has this domid already');
    assert.equal(hostError('guests:\n  - name: a\n    disks: [{ vdev: xvda, target: x }, { vdev: "51712", target: y }]\n'),
      'h.yaml:3: guests[0].disks[1].vdev: the same device as disks[0]');
  });

  it('YAML syntax errors, an empty file and the wrong shape say where', () => {
    assert.match(hostError('guests:\n  - name: a\n   bad: indent\n'), /^h\.yaml:3:\d+: /);
    assert.match(hostError('seed: 1\nseed: 2\n'), /^h\.yaml:2:1: Map keys must be unique/);
    assert.equal(hostError(''), 'h.yaml: empty file (expected a mapping with guests:)');
    assert.equal(hostError('- name: a\n'), 'h.yaml: expected a mapping with seed, mode, guests');
    assert.equal(hostError('guests: { a: 1 }\n'), 'h.yaml:1: guests: expected a list of guests, got {"a":1}');
  });

  it('a missing file is a ConfigError naming it', () => {
    assert.throws(() => loadHostConfig('/nonexistent/h.yaml'), (e: unknown) =>
      e instanceof ConfigError && e.message === '/nonexistent/h.yaml: cannot read (no such file)');
  });
});

describe('guest files for xl create', () => {
  it('YAML: one guest, as in a host config', () => {
    assert.deepEqual(parseGuestFile('name: vm1\nmemory: 64\ndisks: [{ vdev: xvda, target: r }]\n'),
      { config: { name: 'vm1', memory: 64, disks: [{ vdev: 'xvda', target: 'r' }] }, ignored: [] });
  });

  it('an xl.cfg subset: quoting, lists over lines, positional and key=value disk specs, vif specs', () => {
    const text = [
      '# xl.cfg', 'name = "vm1"', "kernel = '/boot/vmlinuz'", 'memory = 256', 'vcpus = 2', 'builder = "hvm"',
      "disk = [ 'format=raw, vdev=xvda, access=rw, target=/dev/vg/vm1',", "         '/srv/b.img,raw,xvdb,ro', 'vdev=hdc:cdrom,size=8,target=iso' ]",
      "vif = [ 'mac=00:16:3e:aa:bb:cc,bridge=xenbr1', 'bridge=xenbr0, devid=3' ]", 'on_reboot = "destroy"', '',
    ].join('\n');
    assert.deepEqual(parseGuestFile(text, 'vm1.cfg'), {
      config: {
        name: 'vm1', memory: 256, vcpus: 2, type: 'hvm', on_reboot: 'destroy',
        disks: [
          { vdev: 'xvda', target: '/dev/vg/vm1', mode: 'w' }, { vdev: 'xvdb', target: '/srv/b.img', mode: 'r' },
          { vdev: 'hdc', target: 'iso', devtype: 'cdrom', sizeMiB: 8 },
        ],
        vifs: [{ mac: '00:16:3e:aa:bb:cc', bridge: 'xenbr1' }, { bridge: 'xenbr0', devid: 3 }],
      },
      ignored: ['kernel', 'builder'],
    });
  });

  it('xl.cfg errors name the line and the option', () => {
    assert.equal(guestError('name = "a"\nmemory = "x"\n'), 'g.cfg:2: memory: expected a number');
    assert.equal(guestError('name = "a"\ncolo = 1\n'), "g.cfg:2: colo: not an xl.cfg option xensim knows");
    assert.equal(guestError('name = "a"\non_crash = "coredump-restart"\n'),
      'g.cfg:2: on_crash: expected destroy, restart or preserve, got "coredump-restart"');
    assert.equal(guestError('name = "a"\ndisk = [ "vdev=xvda,format=qcow2,target=x" ]\n'), "g.cfg:2: disk[0]: format=qcow2: xensim's images are raw");
    assert.equal(guestError('memory = 5\n'), 'g.cfg: name: missing (a domain name)');
    assert.equal(guestError('name = "a\n'), 'g.cfg:1: unterminated string');
  });

  it('disk and vif specs on their own (xl block-attach, network-attach)', () => {
    assert.deepEqual(parseDiskSpec('vdev=xvdc,size=4,target=extra'), { vdev: 'xvdc', target: 'extra', sizeMiB: 4 });
    assert.deepEqual(parseDiskSpec('img,,xvdd,r'), { target: 'img', vdev: 'xvdd', mode: 'r' });
    // target= takes the rest of the spec, commas and all.
    assert.deepEqual(parseDiskSpec('vdev=xvde, target=a,b'), { vdev: 'xvde', target: 'a,b' });
    assert.throws(() => parseDiskSpec('vdev=xvdc', 'spec'), /spec: target: missing/);
    assert.deepEqual(parseVifSpec('mac=00:16:3e:00:00:09, bridge=xenbr0, model=e1000'), { mac: '00:16:3e:00:00:09', bridge: 'xenbr0' });
    assert.throws(() => parseVifSpec('colour=blue', 'spec'), /spec: unknown vif parameter colour/);
  });
});

describe('xensim up CONFIG: mode, seed and sockets', () => {
  const env = process.env.XENSIM_CONTROL;
  before(() => delete process.env.XENSIM_CONTROL);
  after(() => {
    if (env !== undefined) process.env.XENSIM_CONTROL = env;
  });

  it('--socket runs free with the control socket beside it; no socket runs inline lockstep', () => {
    assert.deepEqual(upMode({ guests: [] }, { socket: '/t/xs' }), { mode: 'free', seed: 1, socket: '/t/xs', control: '/t/xs.xl' });
    assert.deepEqual(upMode({ seed: 7, guests: [] }, {}), { mode: 'lockstep', seed: 7, socket: undefined, control: '/tmp/xensim/xl.sock' });
    assert.deepEqual(upMode({ seed: 7, guests: [] }, { seed: 9, control: '/c' }), { mode: 'lockstep', seed: 9, socket: undefined, control: '/c' });
    assert.deepEqual(upMode({ mode: 'free', guests: [] }, {}),
      { mode: 'free', seed: 1, socket: '/tmp/xensim/xenstored.sock', control: '/tmp/xensim/xl.sock' });
    assert.throws(() => upMode({ mode: 'lockstep', guests: [] }, { socket: '/t/xs' }), /a lockstep host has no xenstored socket/);
    assert.throws(() => upMode({ guests: [] }, { lockstep: true, pool: 2 }), /--pool runs guests free/);
  });

  it('a bad config stops `xensim up` with one clear message and exit status 1, no stack trace', function () {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-upcfg-'));
    try {
      const file = path.join(dir, 'bad.yaml');
      writeFileSync(file, 'guests:\n  - name: web\n    memory: 256\n    disks:\n      - { vdev: xvda, target: r, sizeMiB: big }\n');
      const r = spawnSync(process.execPath, ['sim/bin/xensim.mjs', 'up', file], { cwd: REPO_ROOT, encoding: 'utf8', timeout: HANG_MS });
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr, `xensim up: ${file}:5: guests[0].disks[0].sizeMiB: expected a size in MiB, 1 to 65536, got "big"\n`);
      assert.equal(r.stdout, '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
