// xenstore-ls -fp's content: every node under a path, depth first, with its value and ACL.
import type { XsHandle } from './xs.ts';

export interface NodeDump {
  readonly path: string;
  readonly value: string;
  readonly perms: string[];
}

/** Nodes that vanish while walked (or cannot be read) are left out, as xenstore-ls does. */
export async function xenstoreLs(xs: XsHandle, path: string): Promise<NodeDump[]> {
  const out: NodeDump[] = [];
  const walk = async (p: string): Promise<void> => {
    let value: string;
    let perms: string[];
    try {
      value = (await xs.read(p)).toString('latin1');
      perms = await xs.getPerms(p);
    } catch {
      return;
    }
    out.push({ path: p, value, perms });
    const kids = await xs.directory(p).catch(() => [] as string[]);
    for (const c of kids) await walk(p === '/' ? `/${c}` : `${p}/${c}`);
  };
  await walk(path);
  return out;
}
