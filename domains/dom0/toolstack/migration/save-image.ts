// A saved domain as plain data - static data, the pages of each precopy round, the suspended
// state, the emulator's records - and the stream `xl save` / `xl migrate` would write for it.
import { SaveStreamWriter, type CheckpointState, type EmulatorState, type GuestPage, type SaveStreamWriterOptions, type StreamSink } from './stream-writer.ts';

/** One consistent state of the domain: memory rounds, then the state taken while it is suspended. */
export interface SaveCheckpoint {
  /**
   * Pages per round, in send order. A plain `xl save` has one round with every page; a live
   * migration has its precopy rounds (later rounds resend pages dirtied meanwhile) and last the
   * round sent after the domain suspended.
   */
  readonly rounds: readonly (readonly GuestPage[])[];
  readonly state: CheckpointState;
  /** HVM only: the device model's records. */
  readonly emulator?: EmulatorState;
}

export interface SaveImage extends SaveStreamWriterOptions {
  /** A plain stream has exactly one; Remus/COLO streams have one per checkpoint. */
  readonly checkpoints: readonly SaveCheckpoint[];
  /** Plain debug migrations: the pages resent after VERIFY, which the restorer compares. */
  readonly verify?: readonly GuestPage[];
  /** Checkpointed streams: END after the last checkpoint, or the primary just stops (failover). */
  readonly ending?: 'end' | 'failover';
}

/** Writes the whole stream for `image` to `sink`; returns the writer's counts. */
export function writeSaveImage(image: SaveImage, sink: StreamSink): SaveStreamWriter['stats'] {
  const plain = (image.streamType ?? 'plain') === 'plain';
  if (plain && image.checkpoints.length !== 1) throw new RangeError(`a plain stream has one checkpoint, not ${image.checkpoints.length}`);
  if (!plain && image.verify) throw new RangeError('VERIFY belongs to plain streams');
  if (image.checkpoints.length === 0) throw new RangeError('a stream needs at least one checkpoint');
  const w = new SaveStreamWriter(sink, image);
  w.start();
  for (const cp of image.checkpoints) {
    for (const round of cp.rounds) w.sendPages(round);
    w.endOfCheckpoint(cp.state);
    if (plain) {
      if (image.verify) w.verify(image.verify);
      w.finish(cp.emulator);
    } else {
      w.checkpoint(cp.emulator);
    }
  }
  if (!plain && (image.ending ?? 'end') === 'end') w.finish(image.checkpoints[image.checkpoints.length - 1].emulator);
  return w.stats;
}

/** The stream as chunks (tests, small guests; real transfers pass a sink that writes out). */
export function saveImageChunks(image: SaveImage): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  writeSaveImage(image, (c) => chunks.push(c));
  return chunks;
}

