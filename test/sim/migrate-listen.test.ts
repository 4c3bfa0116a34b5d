// Where `xensim up --migrate-listen` binds and what `xensim xl migrate` takes for a TCP host: the
// listener takes loopback addresses only unless told otherwise (the migration stream is
// unauthenticated and creates domains), and a sender's tcp:// host is spelt as no ssh host can be.
import assert from 'node:assert/strict';
import { parseListenAddress, tcpUrl } from '../../sim/migrate-listener.ts';
import { parseTcpHost } from '../../sim/xl-migrate-transport.ts';

describe('--migrate-listen and tcp:// hosts', () => {
  it('binds loopback: ADDR:PORT, [IPV6]:PORT, or PORT on 127.0.0.1', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(parseListenAddress('8002'), { host: '127.0.0.1', port: 8002 });
    assert.deepEqual(parseListenAddress('127.1.2.3:9'), { host: '127.1.2.3', port: 9 });
    assert.deepEqual(parseListenAddress('[::1]:9'), { host: '::1', port: 9 });
    assert.deepEqual(parseListenAddress('localhost:9'), { host: 'localhost', port: 9 });
  });

  it('refuses other addresses unless remote is allowed, and malformed ones always', () => {
    assert.throws(() => parseListenAddress('0.0.0.0:9'), /0\.0\.0\.0 is not a loopback address.*--migrate-allow-remote/);
    assert.throws(() => parseListenAddress('[::]:9'), /not a loopback address/);
    assert.throws(() => parseListenAddress('10.0.0.1:9'), /not a loopback address/);
    assert.deepEqual(parseListenAddress('0.0.0.0:9', true), { host: '0.0.0.0', port: 9 });
    for (const bad of ['', ':9', '127.0.0.1:', '127.0.0.1:65536', '127.0.0.1:x', 'a:b:9', '::1:9']) {
      assert.throws(() => parseListenAddress(bad, true), /--migrate-listen/, bad);
    }
  });

  it('a sender names the listener tcp://ADDR:PORT, as the listener prints it', () => {
    assert.equal(tcpUrl({ host: '127.0.0.1', port: 8002 }), 'tcp://127.0.0.1:8002');
    assert.equal(tcpUrl({ host: '::1', port: 8002 }), 'tcp://[::1]:8002');
    assert.deepEqual(parseTcpHost('tcp://127.0.0.1:8002'), { host: '127.0.0.1', port: 8002 });
    assert.deepEqual(parseTcpHost(tcpUrl({ host: '::1', port: 8002 })), { host: '::1', port: 8002 });
    for (const notTcp of ['otherhost', '/tmp/b.sock', 'tcp://127.0.0.1', 'tcp://127.0.0.1:99999', 'tcp://:9']) assert.equal(parseTcpHost(notTcp), undefined, notTcp);
  });
});
