// Dom0's /dev/xen/xenbus for processes outside the simulator (Debian's xenstore tools, xl's
// XENSTORED_PATH): with xenstored in a xenstore domain there is no xenstored socket in dom0, and
// libxenstore talks through the kernel's device instead. Each client of this Unix socket is one
// open file of that device (XenbusDevFile over dom0's kernel xenbus connection); the byte stream
// is cut at message boundaries so each message is one write(2), as the device wants.
import { unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { XSD_SOCKMSG_SIZE, decodeHeader } from '../../hypervisor/public/io/xs_wire.ts';
import type { XenbusDevFile } from '../kernel/xenbus-dev-frontend.ts';

export async function serveXenbusDevice(socketPath: string, open: () => XenbusDevFile): Promise<Server> {
  try {
    unlinkSync(socketPath);
  } catch {
    /* not there */
  }
  const server = createServer((sock) => {
    const file = open();
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      // Whole messages (or, past the device's limit, what it will refuse) one write each.
      while (buf.length >= XSD_SOCKMSG_SIZE) {
        const end = XSD_SOCKMSG_SIZE + decodeHeader(buf).len;
        if (buf.length < end) break;
        file.write(buf.subarray(0, end));
        buf = buf.subarray(end);
      }
    });
    file.on('data', (out: Buffer) => sock.write(out));
    sock.on('close', () => file.destroy());
    sock.on('error', () => file.destroy());
    file.on('close', () => sock.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}
