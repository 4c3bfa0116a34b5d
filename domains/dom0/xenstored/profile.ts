// Every way C xenstored 4.17 and oxenstored 4.17 answer differently, in one table: the core asks
// its profile's record by behaviour name instead of testing which daemon it plays.
import type { XsError } from '../../../hypervisor/public/io/xs_wire.ts';
import { C_DEFAULT_QUOTAS, OCAML_DEFAULT_QUOTAS, type Quotas } from './quota.ts';

export type Profile = 'c' | 'ocaml';

/** An error code as a daemon names it (oxenstored's quota error has no errno). */
export type XsErrorName = XsError | 'EQUOTA';

export interface Behaviours {
  readonly defaultQuotas: Readonly<Quotas>;

  // ---- the store and its start-up tree
  /** oxenstored's tree has /local, /@introduceDomain and /@releaseDomain from the start. */
  readonly specialNodesInTree: boolean;
  /** /tool/xenstored holds the daemon's path (C: empty). */
  readonly toolPathValue: boolean;
  /** @name paths name real nodes /@name (C: separate special ACLs, GET_PERMS/SET_PERMS EINVAL). */
  readonly specialPathsAreNodes: boolean;
  /** DIRECTORY lists children sorted (C: in creation order). */
  readonly sortedChildren: boolean;
  /** DIRECTORY_PART exists (C 4.17). */
  readonly directoryPart: boolean;
  /** MKDIR / is OK for anyone and changes nothing (oxenstored's path_mkdir). */
  readonly mkdirRootNoop: boolean;
  /**
   * MKDIR of a node that exists leaves no trace in a transaction (oxenstored's path_mkdir checks
   * write access and raises Already_exist before the transaction's lowpath is set): the commit
   * can still be merged. C reads the node, so its generation is checked at commit.
   */
  readonly mkdirExistingUntracked: boolean;
  /**
   * oxenstored looks a watch event's readers up at the event's path, parent and node
   * (lookup_watch_perm), and "/" has no parent there: an event at "/" itself (a WRITE, MKDIR or
   * SET_PERMS of the root) fires for nobody, dom0 included. The WATCH's own first event still goes.
   */
  readonly rootEventFiresForNobody: boolean;
  /**
   * A connection with a SET_TARGET checks each of its identities (domain, then target) on its own:
   * its first ACL entry or the node's default, any one granting the request (oxenstored's
   * Perms.lacks). C takes the first entry naming either.
   */
  readonly aclPerIdentity: boolean;
  /** RM / empties the store (C: EINVAL). */
  readonly rmRootWipes: boolean;

  // ---- requests and replies
  /** The requester's own events precede the reply (oxenstored: after it, commits aside). */
  readonly ownEventsBeforeReply: boolean;
  /** Any request with a tx_id is looked up, run and recorded for a replay (oxenstored). */
  readonly recordEveryRequestInTx: boolean;
  /** CONTROL (oxenstored's DEBUG) is answered OK for anyone, whatever it says. */
  readonly controlIsDebug: boolean;
  /** Unknown transaction id. */
  readonly unknownTxError: XsErrorName;
  /** A malformed path argument (no NUL, extra bytes): C's leftover errno fixed to ENOENT. */
  readonly malformedPathError: XsErrorName;
  /** WATCH/UNWATCH replies carry tx_id 0 (they ignore the header's). */
  readonly watchReplyTxZero: boolean;
  /** Domain ids: C atoi() or OCaml int_of_string (EINVAL when not a number). */
  readonly domidParser: 'atoi' | 'int_of_string';
  /** ACL entry ids: strtol into an unsigned int, or int_of_string. */
  readonly aclIdParser: 'strtol' | 'int_of_string';
  /** GET_PERMS prints ids with C's %i into 12 bytes, or as OCaml ints. */
  readonly aclIdFormat: 'int32' | 'ocaml';

  // ---- permissions
  /** ACL entries of domains gone or younger than the node are ignored (XSA-322 generations). */
  readonly staleAclByGeneration: boolean;
  /** A missing node's error comes from its nearest ancestor's ACL (errno_from_parents, C). */
  readonly errnoFromParents: boolean;
  /** A node a guest creates is owned by the guest (C); oxenstored copies the parent's owner. */
  readonly creatorOwnsNewNode: boolean;
  /**
   * SET_PERMS of a special node that is refused answers the errno the daemon's last request left,
   * not the refusal's reason (C 4.17's do_set_perms returns errno after set_perms_special failed).
   */
  readonly staleErrno: boolean;
  /** Giving a node away (SET_PERMS to another owner) by a guest. */
  readonly giveAwayError: XsErrorName;
  /** SET_PERMS marks entries of unknown domains ignored, ENOENT for an unknown owner (C). */
  readonly ignoreUnknownAclDomains: boolean;

  // ---- quotas
  /** Node size: C's record size (header, ACL, value, children; ENOSPC; dom0 exempt), or the
   * value's length alone (E2BIG, dom0 too), checked first (before permissions). */
  readonly nodeSizeRule: 'record' | 'value-first';
  /** Node count: the creator's against ENOSPC (C), or the owner's against EQUOTA. */
  readonly nodeQuotaRule: 'creator-enospc' | 'owner-equota';
  /** oxenstored's entry quota: its own per-domain bookkeeping, not a count of what a domain owns (quota.ml). */
  readonly entryQuota: boolean;
  /** ACL entries per node are limited for guests (ENOSPC). */
  readonly permissionsQuota: boolean;
  /** A guest changing a node's owner must leave the new owner under quota (C). */
  readonly ownerQuotaOnChown: boolean;
  readonly watchQuotaError: XsErrorName;
  readonly transactionQuotaError: XsErrorName;
  /** A transaction's own node quota (C counts accessed nodes; oxenstored counts requests). */
  readonly txNodeQuotaOnAccess: boolean;

  // ---- watches
  /** An event identical to one still unsent to that connection is dropped (XSA-326, C). */
  readonly dropDuplicateEvents: boolean;
  /**
   * A reply or watch event over XENSTORE_PAYLOAD_MAX: 'core' = C (the reply becomes E2BIG, the
   * event is dropped); 'packet_of' = oxenstored (sent as it is on a socket; on a guest's ring the
   * message becomes an E2BIG error, events included, with their rid 0).
   */
  readonly longMessages: 'core' | 'packet_of';
  /**
   * C 4.17's memory quota (-Q/-q memory=): nodes, watches, transaction copies and queued output
   * charged per domain; oxenstored has no memory quota.
   */
  readonly memoryQuota: boolean;
  /** C 4.17's write-rate limiter (compile-time constants); oxenstored has none. */
  readonly writeRateLimit: boolean;
  /** C 4.17's watch-event timeout (-w watch-event=); oxenstored has none. */
  readonly watchEventTimeout: boolean;
  /** Watches fire from a trie: root down, newest first per path (oxenstored). */
  readonly watchTrieOrder: boolean;
  /** RM fires every watch below the removed node, with its own path (oxenstored). */
  readonly rmFiresWatchesBelow: boolean;
  /** WATCH/UNWATCH want exactly `path\0token\0` (no unterminated tail). */
  readonly watchArgsTerminated: boolean;
  /** WATCH checks the path's length (oxenstored: its characters only). */
  readonly watchPathLengthChecked: boolean;
  /** A guest may watch @introduceDomain/@releaseDomain if it can read /@name or / (oxenstored),
   * or if the special ACL table lets it (C). */
  readonly specialWatchReadFromNodes: boolean;

  // ---- transactions
  /** Commit: EAGAIN if any node touched changed (C), or merge/replay (oxenstored). */
  readonly commitRule: 'generations' | 'merge-replay';
  /** TRANSACTION_START takes a generation count of its own (C). */
  readonly txStartTakesGeneration: boolean;
  /** Largest transaction id before the count wraps. */
  readonly txIdLimit: number;
  /** TRANSACTION_END takes its payload up to the first NUL, if any, and ignores the rest (oxenstored). */
  readonly txEndFirstPiece: boolean;
  /** Quota error inside a transaction. */
  readonly txQuotaError: XsErrorName;

  // ---- domains
  /** INTRODUCE with port 0 is EINVAL (C). */
  readonly introducePortMustBeSet: boolean;
  /** Re-INTRODUCE of an introduced domain with another mfn is EINVAL (oxenstored). */
  readonly introduceMfnMustMatch: boolean;
  /** Re-INTRODUCE resets the domain's connection: watches and transactions go (C). */
  readonly reintroduceResets: boolean;
  /** RELEASE/RESUME/IS_DOMAIN_INTRODUCED/SET_TARGET/GET_DOMAIN_PATH as oxenstored's process.ml
   * does them (reset_permissions, dom0 as the event source, c_int_of_string...). */
  readonly domainOpsOcaml: boolean;
  /** A shut-down domain's @releaseDomain fires once until RESUME (C); oxenstored on every scan. */
  readonly shutdownReportedOnce: boolean;

  // ---- transports
  /** A ring whose connection went away keeps what the guest wrote, read when the domain gets a
   * new connection (oxenstored); C's INTRODUCE resets the ring's indexes. */
  readonly ringKeepsUnmappedInput: boolean;
}

export const BEHAVIOURS: Readonly<Record<Profile, Behaviours>> = {
  c: {
    defaultQuotas: C_DEFAULT_QUOTAS,
    specialNodesInTree: false,
    toolPathValue: false,
    specialPathsAreNodes: false,
    sortedChildren: false,
    directoryPart: true,
    mkdirRootNoop: false,
    mkdirExistingUntracked: false,
    rootEventFiresForNobody: false,
    aclPerIdentity: false,
    rmRootWipes: false,
    ownEventsBeforeReply: true,
    recordEveryRequestInTx: false,
    controlIsDebug: false,
    unknownTxError: 'ENOENT',
    malformedPathError: 'ENOENT',
    watchReplyTxZero: false,
    domidParser: 'atoi',
    aclIdParser: 'strtol',
    aclIdFormat: 'int32',
    staleAclByGeneration: true,
    errnoFromParents: true,
    creatorOwnsNewNode: true,
    staleErrno: true,
    giveAwayError: 'EPERM',
    ignoreUnknownAclDomains: true,
    nodeSizeRule: 'record',
    nodeQuotaRule: 'creator-enospc',
    entryQuota: false,
    permissionsQuota: true,
    ownerQuotaOnChown: true,
    watchQuotaError: 'E2BIG',
    transactionQuotaError: 'ENOSPC',
    txNodeQuotaOnAccess: true,
    dropDuplicateEvents: true,
    longMessages: 'core',
    memoryQuota: true,
    writeRateLimit: true,
    watchEventTimeout: true,
    watchTrieOrder: false,
    rmFiresWatchesBelow: false,
    watchArgsTerminated: false,
    watchPathLengthChecked: true,
    specialWatchReadFromNodes: false,
    commitRule: 'generations',
    txStartTakesGeneration: true,
    txIdLimit: 0xffffffff,
    txEndFirstPiece: false,
    txQuotaError: 'ENOSPC',
    introducePortMustBeSet: true,
    introduceMfnMustMatch: false,
    reintroduceResets: true,
    domainOpsOcaml: false,
    shutdownReportedOnce: true,
    ringKeepsUnmappedInput: false,
  },
  ocaml: {
    defaultQuotas: OCAML_DEFAULT_QUOTAS,
    specialNodesInTree: true,
    toolPathValue: true,
    specialPathsAreNodes: true,
    sortedChildren: true,
    directoryPart: false,
    mkdirRootNoop: true,
    mkdirExistingUntracked: true,
    rootEventFiresForNobody: true,
    aclPerIdentity: true,
    rmRootWipes: true,
    ownEventsBeforeReply: false,
    recordEveryRequestInTx: true,
    controlIsDebug: true,
    unknownTxError: 'EIO',
    malformedPathError: 'EINVAL',
    watchReplyTxZero: true,
    domidParser: 'int_of_string',
    aclIdParser: 'int_of_string',
    aclIdFormat: 'ocaml',
    staleAclByGeneration: false,
    errnoFromParents: false,
    creatorOwnsNewNode: false,
    staleErrno: false,
    giveAwayError: 'EACCES',
    ignoreUnknownAclDomains: false,
    nodeSizeRule: 'value-first',
    nodeQuotaRule: 'owner-equota',
    entryQuota: true,
    permissionsQuota: false,
    ownerQuotaOnChown: false,
    watchQuotaError: 'EQUOTA',
    transactionQuotaError: 'EQUOTA',
    txNodeQuotaOnAccess: false,
    dropDuplicateEvents: false,
    longMessages: 'packet_of',
    memoryQuota: false,
    writeRateLimit: false,
    watchEventTimeout: false,
    watchTrieOrder: true,
    rmFiresWatchesBelow: true,
    watchArgsTerminated: true,
    watchPathLengthChecked: false,
    specialWatchReadFromNodes: true,
    commitRule: 'merge-replay',
    txStartTakesGeneration: false,
    txIdLimit: 0x3ffffffe,
    txEndFirstPiece: true,
    txQuotaError: 'EQUOTA',
    introducePortMustBeSet: false,
    introduceMfnMustMatch: true,
    reintroduceResets: false,
    domainOpsOcaml: true,
    shutdownReportedOnce: false,
    ringKeepsUnmappedInput: true,
  },
};
