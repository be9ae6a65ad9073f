//! The audit trail's vocabulary: the event catalogue, the event record, and the bus.
//!
//! Every event has a stable numeric id and a dotted name, grouped by *what happened*, not by
//! protocol: the protocol is a field, so "every upload" is one query. Ids are never reused
//! or renumbered; `docs/events.md` is generated from [`EventKind::ALL`] and a test fails when
//! the two differ.
//!
//! The bus only hands records to the audit writer (which numbers them, chains their hashes
//! and persists them). It never blocks a session and never drops a record: if the writer is
//! gone, the record goes to the process log instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use wharf_types::Protocol;

macro_rules! catalogue {
    ($( $variant:ident = $id:literal, $name:literal, $doc:literal; )*) => {
        /// Every kind of audit event, with its stable id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventKind {
            $( #[doc = $doc] $variant, )*
        }

        impl EventKind {
            /// The whole catalogue, in id order.
            pub const ALL: &'static [EventKind] = &[ $( EventKind::$variant, )* ];

            /// The stable numeric id.
            pub fn id(self) -> u32 {
                match self { $( EventKind::$variant => $id, )* }
            }

            /// The stable dotted name.
            pub fn name(self) -> &'static str {
                match self { $( EventKind::$variant => $name, )* }
            }

            /// What the event means, for the generated catalogue.
            pub fn description(self) -> &'static str {
                match self { $( EventKind::$variant => $doc, )* }
            }
        }
    };
}

catalogue! {
    ServerStarted = 10001, "server.started", "The wharf process started serving; `message` names the version; with a cluster configuration, `attrs.revision` is the revision it started on and `attrs.published_by` who published it.";
    ServerStopped = 10002, "server.stopped", "The wharf process stopped serving (signal or fatal error).";
    ServiceStarted = 10010, "service.started", "A service began listening; `message` lists its addresses.";
    ServiceStopped = 10011, "service.stopped", "A service stopped listening.";
    ServiceFailed = 10012, "service.failed", "A service could not start or stopped on an error; `message` says why.";
    ConfigurationReloaded = 10020, "configuration.reloaded", "The running server applied its configuration file again (`wharf reload`, SIGHUP): `message` lists the services started, retired (their open sessions go on to their end) and replaced, `attrs.handlers` whether the event handlers were replaced, `attrs.sinks` whether the `[[audit.sink]]` copies were, and the certificate was read again; with a cluster configuration, `attrs.revision` is the revision in force and `attrs.published_by` who published it. Accounts, groups and administrators are in the store and need no reload.";
    ConfigurationRefused = 10021, "configuration.refused", "A reload was asked for but the configuration file does not validate, or a part of it cannot be used (a certificate that does not load): nothing changed; `message` says why, with file, line and key.";
    StoreUnreachable = 10030, "store.unreachable", "The node could not reach its store (PostgreSQL down or restarting) and reaches it again; recorded once it is back. `attrs.since` is when the node first missed it, `attrs.seconds` how long, `message` the first failure. Logins failed closed meanwhile (`login.failed` with `attrs.cause` `store`).";
    BackupMade = 10040, "backup.made", "A backup archive was written whole (`wharf backup`, or `[backup]`'s schedule: `attrs.trigger` says which). `attrs.file` is the archive, `bytes` its size, `attrs.files` the files it carries besides the store, `attrs.accounts` and `attrs.records` what its store snapshot holds, `attrs.encrypted` whether it is sealed; a scheduled one also gives `attrs.removed`, the older archives removed to keep `[backup] keep`.";
    BackupFailed = 10041, "backup.failed", "A backup could not be taken; `message` says why and `attrs.file` where it was to go. Nothing is left under that name.";
    BackupRestored = 10042, "backup.restored", "The first record a store restored from a backup gets (`wharf restore`): `attrs.archive` is the archive, `attrs.made` when it was taken, `attrs.from_node` by which node. Every node the backup knew as running is marked stopped.";
    AuditArchived = 10045, "audit.archived", "Records past `[audit] retention_days` moved out of the store into an archive file; `attrs.file` names it (in `[audit] archive_dir`), `attrs.first` and `attrs.last` the chain numbers it holds, `attrs.sha256` its digest. The store keeps the checkpoint `wharf audit verify` walks the files by.";
    AuditArchiveFailed = 10046, "audit.archive_failed", "Archiving records past their retention failed (a folder that cannot be written, a chain that does not verify); `message` says why. Every record stays in the store; the next run tries again.";
    NodeStandby = 10050, "node.standby", "A node started as a standby (`wharf serve --standby`): it listens on nothing and takes over on `wharf takeover` or, on PostgreSQL, when no live process holds its name.";
    NodeTookOver = 10051, "node.took_over", "A standby took over and serves: `attrs.cause` is `command` (`wharf takeover`) or `heartbeat` (the active node's heartbeat stopped), `attrs.waited_ms` how long it stood by, `attrs.from_host` and `attrs.from_pid` the process that held the name, if it had not stopped cleanly.";
    ConnectionOpened = 20001, "connection.opened", "A client connected; `remote` holds its address and port (IPv4 or IPv6).";
    ConnectionClosed = 20002, "connection.closed", "A connection ended; `duration_ms` is its length and `message` the reason.";
    ConnectionRefused = 20003, "connection.refused", "A connection was refused at accept, before any handshake; `attrs.cause` says why (`banned`, `rate`, `max-connections`, `max-per-ip`; on a service behind load balancers, `proxy-untrusted` for a peer not listed in `proxy_from` and `proxy-header` for a missing, malformed, oversized or late PROXY protocol header, both under the socket's own address) and `attrs.network` whose. A flood is recorded sparingly: each record also stands for `attrs.suppressed` refusals of the same service, network and cause that were not recorded one by one.";
    TlsEstablished = 20004, "tls.established", "A TLS handshake completed on a control connection; `attrs.version` and `attrs.cipher` say what was negotiated (data connections are recorded only when they fail, as `tls.failed`).";
    TlsFailed = 20005, "tls.failed", "A TLS handshake failed or stalled, a client spoke TLS-less where TLS is required, a data connection did not resume a TLS session of its own login, or `PROT C` was refused; `message` says which.";
    LoginSucceeded = 20010, "login.succeeded", "An account authenticated; `attrs.method` is password or publickey (with the key fingerprint).";
    LoginFailed = 20011, "login.failed", "An authentication attempt failed; `attrs.method` and `message` give the method and the reason. Never holds a password.";
    SessionStarted = 20020, "session.started", "A file session (SFTP subsystem, SCP command) started for an authenticated account.";
    SessionEnded = 20021, "session.ended", "A file session ended.";
    CommandRefused = 20030, "command.refused", "A request was refused by policy (an exec command, a shell, a forwarding request); `message` names it.";
    ProtocolError = 20031, "protocol.error", "A client sent something the protocol forbids (oversized packet, malformed record, lying size); the session was answered with an error or closed.";
    BanAdded = 20040, "ban.added", "A client network was banned after its failures reached the threshold; `remote` is the address that tipped it, `attrs.network` the banned network, `attrs.until` when the ban ends, `attrs.strikes` how often it was banned, `attrs.score` its score.";
    BanLifted = 20041, "ban.lifted", "A ban ended when its time ran out (recorded once in a cluster, by the first node to see it end); `attrs.network` names it.";
    UploadStarted = 30001, "upload.started", "A file was opened for writing; `attrs.mode` is create, overwrite, append or resume.";
    UploadFinished = 30002, "upload.finished", "An upload was committed under its final name; `bytes`, `duration_ms` and `sha256` of the whole file.";
    UploadFailed = 30003, "upload.failed", "An upload ended without being committed (disconnect, error, abort); the partial data was removed, or kept under its final name in resumable mode (`attrs.kept`).";
    LeftoverSwept = 30004, "upload.leftover_swept", "The temporary file of an upload that lost its owner (the server stopped in the middle of it) was found by the sweep that runs at start and every 10 minutes: removed, or, for a resumable upload, kept under its final name (`attrs.kept_as`) when that name was free. `attrs.root` is the folder swept, `path` the file below it, `bytes` its size.";
    DownloadStarted = 30010, "download.started", "A file was opened for reading.";
    DownloadFinished = 30011, "download.finished", "A download ended; `bytes` sent and `duration_ms`.";
    DownloadFailed = 30012, "download.failed", "A download ended on an error.";
    FileDeleted = 30020, "file.deleted", "A file was removed.";
    EntryRenamed = 30021, "entry.renamed", "A file or folder was renamed; `path` is the source and `path2` the destination.";
    FolderCreated = 30022, "folder.created", "A folder was created.";
    FolderRemoved = 30023, "folder.removed", "A folder was removed.";
    AttributesChanged = 30024, "attributes.changed", "Attributes of an entry changed; `attrs` lists what (mode, times, size; for WebDAV dead properties, `properties_set` and `properties_removed` count them).";
    LinkCreated = 30025, "link.created", "A symbolic or hard link was created; `path` is the link, `path2` its target.";
    FileCopied = 30026, "file.copied", "A file was copied on the server; `path` is the source and `path2` the copy.";
    FolderListed = 30027, "folder.listed", "A folder's entries were listed.";
    EntryLocked = 30028, "entry.locked", "A WebDAV client locked a path; `attrs.scope` is `exclusive` or `shared`, `attrs.depth` `0` or `infinity`, `attrs.timeout` the seconds granted. A lock refused because another covers the path is recorded failed.";
    EntryUnlocked = 30029, "entry.unlocked", "A WebDAV client released its lock on a path (UNLOCK); a lock that times out ends without a record.";
    PermissionDenied = 30030, "permission.denied", "An operation was refused by a permission rule or the home-folder jail; `attrs.verb` is the refused verb.";
    HandlerRetrying = 40001, "handler.retrying", "An event handler's action failed and will be tried again; `attrs.handler` names the handler, `attrs.trigger` the `seq` of the event it acts on, `attrs.attempt` the attempt that failed, `attrs.next` when it runs again, and `message` the error. Every 4xxxx record has `attrs.handler` and `attrs.trigger`.";
    HandlerFailed = 40002, "handler.failed", "An event handler gave up on an event (attempts used up, or an error that retrying cannot mend); `message` says why. The file stays where the last successful step left it.";
    HandlerRefused = 40003, "handler.refused", "An event handler left a file alone because acting on it would not be safe: a symbolic link stood on the way to the file or its destination (handlers follow none), or the file is not the one its event names (another inode than `attrs.inode`, other content than `sha256`, or replaced or changed after it was checked); `message` says which. Nothing was moved, copied, created or deleted for it.";
    SignatureValid = 40010, "signature.valid", "A file's detached RSASSA-PSS signature verified; `attrs.key` names the public key that verified it, `attrs.destination` where the file was moved, if anywhere.";
    SignatureInvalid = 40011, "signature.invalid", "A file's signature did not verify, could not be read, or did not arrive in time; `message` says which. The file (and its signature) went to quarantine (`attrs.quarantine`).";
    FileDispatched = 40020, "file.dispatched", "A dispatch rule moved or copied a file; `attrs.rule` is the rule's position, `attrs.destination` the server path, `attrs.copy` is true for copies.";
    DispatchUnmatched = 40021, "dispatch.unmatched", "No dispatch rule matched a file; it was left in place (quarantined files are recorded as `file.quarantined`).";
    FileQuarantined = 40030, "file.quarantined", "A file was moved to the quarantine folder, with a JSON sidecar saying why; `attrs.quarantine` is its path there, `message` the reason.";
    FileRemoved = 40031, "file.removed", "A handler removed a file: its content matched a `content-check` rule that denies it, or `antivirus` found it infected with `infected = \"delete\"`; `message` says which. `path` is the file as the account saw it.";
    FilePrefixed = 40040, "file.prefixed", "An upload was renamed to `<uuid>-<name>`, or was given that name as it committed (`message` says so); `path` is the old name and `path2` the new one (both as the account sees them).";
    ProgramRan = 40050, "program.ran", "An `exec` handler's program exited with status 0; `attrs.program` names it and `message` holds the start of its output.";
    WebhookDelivered = 40060, "webhook.delivered", "An event was POSTed to a webhook and the receiver answered 2xx; `attrs.status` is the answer's status, `attrs.delivery` the delivery id the receiver can deduplicate on.";
    AntivirusClean = 40070, "antivirus.clean", "ClamAV's daemon scanned a file and found nothing; `attrs.scanner` names the daemon's socket. Dispatch handlers that follow this event only move files once scanned.";
    AntivirusInfected = 40071, "antivirus.infected", "ClamAV's daemon found a file infected; `attrs.signature` is the signature's name, `attrs.quarantine` where the file went (or `file.removed` follows, with `infected = \"delete\"`).";
    AntivirusUnscanned = 40072, "antivirus.unscanned", "ClamAV's daemon could not be reached, and the handler lets files pass unscanned (`unreachable = \"pass\"`); `message` says why. With the default (`hold`), the job is retried instead (`handler.retrying`) and the file waits.";
    AntivirusRefused = 40073, "antivirus.refused", "ClamAV's daemon answered that it cannot scan a file (a stream past its `StreamMaxLength`, a file it cannot read); the file is quarantined whatever `unreachable` says (`attrs.quarantine`, then `file.quarantined`), as the same file would be refused again.";
    ContentPassed = 40080, "content.passed", "A `content-check` let a file go on: no rule matched in its text (and the text of the entries of ZIP archives and office documents), or only rules that tag it (`attrs.tags`, after `content.matched`). Dispatch handlers that follow this event only move checked files. With `attrs.unscannable` true, the content could not be read whole and the handler lets such files pass; `message` says why.";
    ContentMatched = 40081, "content.matched", "A `content-check` found rules matched in a file: `attrs.matches` lists each rule with its count (`cards=3,iban=1`), never the matched text; `attrs.outcome` is what was done (`tag`, `quarantine` or `deny`); `attrs.tags` the rules' names, also written to the file's `user.wharf.tags` extended attribute when tagged (`attrs.tagged`).";
    ContentUnscannable = 40082, "content.unscannable", "A `content-check` could not read a file's content whole within its limits (an archive expanding too far or too fast, too many entries, archives nested too deep, an encrypted entry, a damaged archive); `message` says which. The file went to quarantine (`attrs.quarantine`).";
    EmailSent = 40090, "email.sent", "An `email` handler's message was taken by the SMTP server; `attrs.to` lists its recipients, `attrs.message_id` its Message-ID (the same on every attempt), `attrs.events` how many events it tells of, and `message` its subject. A batched message names its window (`attrs.window`, its start in µs), exactly the events it listed (`attrs.seqs`, their `seq` as runs such as `12-14,17`; `attrs.first_seq` and `attrs.last_seq`) and where in the window it stopped reading (`attrs.through`, time in µs and `seq`).";
    OpenPgpEncrypted = 40100, "openpgp.encrypted", "An `openpgp` handler encrypted a file to its recipients' keys; `attrs.output` is the new file (the event's file for the handlers that follow), `attrs.source_removed` whether the source went.";
    OpenPgpDecrypted = 40101, "openpgp.decrypted", "An `openpgp` handler decrypted a file; `attrs.output` is the plain file, `attrs.signer` the fingerprint of the trusted key whose signature verified, when signers are required.";
    OpenPgpSigned = 40102, "openpgp.signed", "An `openpgp` handler made a signed OpenPGP message of a file; `attrs.output` is the new file.";
    OpenPgpVerified = 40103, "openpgp.verified", "An `openpgp` handler verified a signed message by a trusted key (`attrs.signer`, its fingerprint) and took the file out of it (`attrs.output`).";
    OpenPgpFailed = 40104, "openpgp.failed", "An `openpgp` handler could not decrypt, verify or open a file (not an OpenPGP message, damaged, not for this key, signed by no trusted key, or opening to more than `max_ratio` times its size); `message` says which. The file went to quarantine (`attrs.quarantine`); nothing was written.";
    AccountCreated = 50001, "account.created", "An account was created.";
    AccountUpdated = 50002, "account.updated", "An account changed; `message` says what (password, key, groups, enabled). Never holds a password.";
    AccountRemoved = 50003, "account.removed", "An account was removed.";
    GroupCreated = 50010, "group.created", "A group was created.";
    GroupUpdated = 50011, "group.updated", "A group changed.";
    GroupRemoved = 50012, "group.removed", "A group was removed.";
    ConfigurationApplied = 50020, "configuration.applied", "`wharf apply` imported accounts and groups; `message` counts the changes.";
    BanRemoved = 50030, "ban.removed", "An administrator lifted a ban (`wharf ban remove`); `attrs.network` names it.";
    BanSet = 50031, "ban.set", "An administrator banned a client network (`wharf ban add`); `attrs.network` names it, `attrs.until` when the ban ends.";
    AdminCreated = 50040, "admin.created", "A Manager administrator was created; `attrs.target` names it, `attrs.after` gives its role. Every 5xxxx record names who acted: `attrs.admin` (a Manager administrator, with `attrs.token` when an API token was used) or `attrs.operator` (the operating-system user of a `wharf` command, `service` `cli`), and `remote` the Manager client's address.";
    AdminUpdated = 50041, "admin.updated", "A Manager administrator changed (password, role, one-time codes, enabled); `attrs.target` names it, `message` says what, `attrs.before` and `attrs.after` what changed (never a secret).";
    AdminRemoved = 50042, "admin.removed", "A Manager administrator was removed, with its API tokens; `attrs.target` names it.";
    TokenCreated = 50045, "token.created", "A Manager API token was made; `attrs.target` is its name, `attrs.after` its role, owner and expiry. The token itself is shown once and never recorded.";
    TokenRemoved = 50046, "token.removed", "A Manager API token was revoked; `attrs.target` is its name.";
    AdminLoginSucceeded = 50050, "admin.login_succeeded", "An administrator logged in to the Manager; `attrs.admin` names it, `attrs.second_factor` whether a one-time code was given.";
    AdminLoginFailed = 50051, "admin.login_failed", "A Manager login failed; `attrs.cause` says why (`unknown-admin`, `wrong-password`, `wrong-code`, `code-reused` (a code another login spent at the same moment), `disabled`, `second-factor-not-enrolled`, `unknown-token` (an API token unknown, expired, or whose administrator is disabled or removed), `store` (the store could not be asked; not counted toward bans)), `attrs.name` the name given (at most 64 characters). It counts toward bans like `login.failed`. Never holds a password.";
    AdminLoggedOut = 50052, "admin.logged_out", "An administrator logged out of the Manager.";
    AdminRefused = 50053, "admin.refused", "A Manager request was refused because the caller's role does not allow it; `attrs.admin` names the caller, `attrs.role` its role, `message` the request.";
    ConfigurationChanged = 50060, "configuration.changed", "An administrator replaced the node's configuration file from the Manager, and the running server reloaded it; `message` gives the reload's outcome, `attrs.lines` how many lines changed (the text itself is not recorded).";
    ClusterConfigurationPublished = 50061, "cluster.configuration.published", "An administrator published a revision of the configuration the cluster shares (`[[authentication]]`, `[ban]`, `[password_policy]`, `[[handler]]`); `attrs.revision` is its number, `attrs.previous` the one it replaced, `attrs.sha256` the digest of its text (kept per revision in the store; not recorded here). Each node then records `configuration.reloaded` with the same `attrs.revision`.";
    JobRetried = 50070, "job.retried", "An administrator put a failed handler job back in the queue, its attempts counted from zero; `attrs.target` is the job's id, `attrs.handler` its handler.";
    JobCancelled = 50071, "job.cancelled", "An administrator gave up a queued handler job before any node ran it; `attrs.target` is the job's id, `attrs.handler` its handler.";
    SessionDisconnected = 50080, "session.disconnected", "An administrator ended a client's connection from the Manager; `attrs.target` is the session id, `attrs.account` its account, `attrs.client` the client's address, `attrs.before` the session with its transfers in flight. The connection's own records follow (`connection.closed` and any transfer's `*.failed` say `disconnected by an administrator`).";
    TransferRunRequested = 50090, "transfer.run.requested", "An administrator asked for a run of a client-side transfer now (Manager or API); `attrs.target` is the transfer. The node that holds it, or claims it first, runs it (`transfer.run.started` with `attrs.trigger` `manager (ADMIN)`).";
    TransferRunStarted = 60001, "transfer.run.started", "A client-side transfer began a run on this node: `attrs.transfer` names it, `attrs.run` is the run's number (`wharf transfer history`), `attrs.trigger` what started it (`interval`, `cron`, `event`, `hand`, `manager`, `retry`, `resume`), `attrs.source` and `attrs.destination` its locations. Each transfer runs on one node of a cluster at a time.";
    TransferRunFinished = 60002, "transfer.run.finished", "A transfer's run ended: `attrs.files` files delivered, `bytes` their bytes, `attrs.skipped` left alone (their name was taken), `attrs.failures` that failed (retried later unless `attrs.given_up`), `duration_ms`; a failure names what stopped the run in `message` (a location that cannot be reached, a listing refused).";
    TransferFileCopied = 60010, "transfer.file.copied", "A file reached its destination under its final name: `path` is its path on the source location (`attrs.source`), `path2` on the destination (`attrs.destination`), `bytes`, `sha256` of what was read at the source, `duration_ms` the copy's time; `attrs.transfer`, `attrs.run`. Written under a temporary name first and renamed once complete and verified, so no partial file ever has the final name. Delivered to a local folder, `attrs.root`, `attrs.file` and `attrs.inode` say where: event handlers act on it (`on = [\"transfer.file.copied\"]`, `transfers = [...]`).";
    TransferFileVerified = 60011, "transfer.file.verified", "A copied file was checked at the destination before its rename: `attrs.method` is `size` (always), or `sha256` with how the destination gave its digest (`check-file`, `sha256sum`, `HASH`, `Repr-Digest`, `local`) where it offers one; a mismatch fails the file (`transfer.file.failed`) and it is copied again.";
    TransferFileSkipped = 60012, "transfer.file.skipped", "A file was left alone: its name is taken at the destination and the transfer says `existing = \"skip\"` (`message`); it is not tried again until it changes at the source.";
    TransferFileFailed = 60013, "transfer.file.failed", "A file's copy failed: `message` says why (never a secret), `attrs.attempt` which attempt, and `attrs.retry_in` the wait before the next one, or `attrs.given_up` when its attempts are spent or the failure is for good (`existing = \"fail\"` and the name taken). Nothing partial is left under the final name.";
    TransferSourceHandled = 60014, "transfer.source.handled", "A delivered file's source was dealt with as the transfer says: `attrs.action` is `deleted` or `moved` (then `path2` is where it went on the source location).";
    TransferLocationFailed = 60020, "transfer.location.failed", "A transfer could not use one of its locations: it could not be reached, refused the login, showed a host key or certificate that is not the pinned one, or refused a listing; `attrs.location` names it, `message` says which (no secret). The run is tried again later with a doubling wait.";
}

impl EventKind {
    /// Looks a kind up by id.
    pub fn from_id(id: u32) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.id() == id)
    }

    /// Renders the catalogue as the Markdown page `docs/events.md`.
    pub fn catalogue_markdown() -> String {
        let mut out = String::from(
            "# Audit event catalogue\n\n\
             Generated from `crates/wharf-core/src/events.rs`; a test fails when this page and \
             the code differ. Regenerate with `cargo run -- events --catalogue > docs/events.md`.\n\n\
             Every record has: `seq` (its place in the trail: increasing, merged across the \
             cluster's nodes), `node_seq` (gap-free number within the node's own chain), `id`, \
             `name`, `time` (UTC, microseconds), `node` (the node that recorded it), `service`, `protocol`, `session`, `account`, `remote` (address and port, IPv6-aware), \
             `path`, `path2`, `bytes`, `sha256`, `duration_ms`, `outcome` (`success` or `failure`), \
             `message`, `attrs` (kind-specific text fields), and the hash-chain fields `prev` (the hash \
             of the same node's previous record) and `hash`. Each node keeps its own chain; \
             `wharf events` shows every node's records merged in time order (`--node NAME` for \
             one), and `wharf audit verify` checks every chain and reports each node. Records \
             written before chains were per node have no `node_seq`: their `seq` numbers the \
             chain.\n\n\
             | range | what |\n|---|---|\n\
             | 1xxxx | server and service lifecycle |\n\
             | 2xxxx | connections, authentication, sessions, bans |\n\
             | 3xxxx | file and folder operations |\n\
             | 4xxxx | event handlers and data-loss prevention |\n\
             | 5xxxx | administration |\n\
             | 6xxxx | client-side transfers |\n\n\
             | id | name | meaning |\n|---:|---|---|\n",
        );
        for kind in EventKind::ALL {
            out.push_str(&format!(
                "| {} | `{}` | {} |\n",
                kind.id(),
                kind.name(),
                kind.description()
            ));
        }
        out
    }
}

/// Whether the operation an event records succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It did not.
    Failure,
}

impl Outcome {
    /// The outcome's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One audit record before the writer numbers and chains it.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When, in UTC.
    pub time: OffsetDateTime,
    /// The service name from the configuration.
    pub service: Option<String>,
    /// The protocol spoken.
    pub protocol: Option<Protocol>,
    /// The session (or connection) id.
    pub session: Option<String>,
    /// The account name (as authenticated, or as attempted for failed logins).
    pub account: Option<String>,
    /// The client's address and port.
    pub remote: Option<SocketAddr>,
    /// The client-visible path.
    pub path: Option<String>,
    /// The second path (rename destination, link target, copy destination).
    pub path2: Option<String>,
    /// Bytes moved.
    pub bytes: Option<u64>,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: Option<String>,
    /// How long the operation or connection took.
    pub duration_ms: Option<u64>,
    /// Success or failure.
    pub outcome: Outcome,
    /// A human-readable explanation.
    pub message: Option<String>,
    /// Kind-specific fields (auth method, verb, upload mode...).
    pub attrs: BTreeMap<String, String>,
}

/// Most characters of a name typed by a client that a record keeps.
const SHOWN_NAME_CHARS: usize = 256;

/// A name as a client typed it, for the `account` field of a record. Valid account names
/// hold at most 64 characters, so any longer name is kept as given; one too long even for
/// a record is cut and ends with `…`, a character no account name holds, so a cut name
/// can never read as another, existing account.
pub fn shown_name(typed: &str) -> String {
    if typed.chars().count() <= SHOWN_NAME_CHARS {
        return typed.to_owned();
    }
    let mut shown: String = typed.chars().take(SHOWN_NAME_CHARS - 1).collect();
    shown.push('…');
    shown
}

impl Event {
    /// A new event of `kind`, now, successful, with no fields set.
    pub fn new(kind: EventKind) -> Self {
        Event {
            kind,
            time: OffsetDateTime::now_utc(),
            service: None,
            protocol: None,
            session: None,
            account: None,
            remote: None,
            path: None,
            path2: None,
            bytes: None,
            sha256: None,
            duration_ms: None,
            outcome: Outcome::Success,
            message: None,
            attrs: BTreeMap::new(),
        }
    }

    /// Marks the event as a failure with `message`.
    pub fn failed(mut self, message: impl Into<String>) -> Self {
        self.outcome = Outcome::Failure;
        self.message = Some(message.into());
        self
    }

    /// Sets the message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets one kind-specific field.
    pub fn attr(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attrs.insert(key.to_owned(), value.into());
        self
    }

    /// Sets the path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets the second path.
    pub fn path2(mut self, path: impl Into<String>) -> Self {
        self.path2 = Some(path.into());
        self
    }
}

/// Where sessions send their events. Cheap to clone; `emit` never blocks.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    sender: mpsc::UnboundedSender<Event>,
    observer: Option<Arc<dyn EventObserver>>,
    /// Records handed to the writer so far; the lock keeps numbering and channel order alike.
    sent: std::sync::Mutex<u64>,
    /// What the writer has dealt with, and what it could not make durable.
    written: Arc<tokio::sync::watch::Sender<Progress>>,
    /// Whether event handlers act on file events (records then carry file identities).
    durable: std::sync::atomic::AtomicBool,
    /// Whether [`EventBus::emit_durable`] waits for the writer and answers an error when
    /// the record could not be made durable.
    confirmed: std::sync::atomic::AtomicBool,
    /// Which uploads commit under a unique name (set once, when the server starts).
    naming: std::sync::RwLock<Option<Arc<dyn crate::naming::UploadNaming>>>,
    /// The sessions open now: the live side of `session.started` and `session.ended`,
    /// held here because every session is given the bus.
    live: crate::live::Live,
}

/// A record the audit writer could not make durable (neither in the store nor in the
/// node's spill file): the operation it records is refused rather than left unaudited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotDurable(pub String);

/// How far the writer got, in the order records were handed to it.
#[derive(Debug, Default)]
struct Progress {
    /// Records dealt with: made durable, or reported lost.
    dealt: u64,
    /// The latest runs of records (first, last; inclusive) reported lost, oldest first.
    lost: std::collections::VecDeque<(u64, u64)>,
    /// Why the writer cannot make records durable now, while it cannot.
    trouble: Option<String>,
}

/// Runs of lost records remembered (adjacent runs merge, so one long outage is one run).
const LOST_RUNS: usize = 64;

/// The writer's side of the bus's progress: how many records it has dealt with.
#[derive(Clone)]
pub struct WriterProgress(Arc<tokio::sync::watch::Sender<Progress>>);

impl WriterProgress {
    /// Reports `count` more records made durable, in the order they were received.
    pub fn advance(&self, count: u64) {
        if count > 0 {
            self.0.send_modify(|p| p.dealt += count);
        }
    }

    /// Reports `count` more records, in order, that could not be made durable: the
    /// operations waiting for them are refused.
    pub fn lose(&self, count: u64) {
        if count == 0 {
            return;
        }
        self.0.send_modify(|p| {
            let (first, last) = (p.dealt + 1, p.dealt + count);
            p.dealt = last;
            match p.lost.back_mut() {
                Some(run) if run.1 + 1 == first => run.1 = last,
                _ => p.lost.push_back((first, last)),
            }
            while p.lost.len() > LOST_RUNS {
                p.lost.pop_front();
            }
        });
    }

    /// Says whether records can be made durable now (`None`) or why not: while they
    /// cannot, file operations are refused before they start.
    pub fn set_trouble(&self, trouble: Option<String>) {
        self.0.send_if_modified(|p| {
            if p.trouble == trouble {
                return false;
            }
            p.trouble = trouble;
            true
        });
    }
}

/// How long [`EventBus::emit_durable`] waits at most (a writer that stopped must not hold
/// a client's answer for ever). The writer makes a record durable within a few seconds
/// even while the store is unreachable (it spills to a file), so this is a last resort.
const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Something that watches every event as it is emitted (the ban engine) and may answer
/// with events of its own. It runs on the emitting task, so it must be quick and must
/// never block.
pub trait EventObserver: Send + Sync {
    /// Looks at `event`; returns events to record after it.
    fn observe(&self, event: &Event) -> Vec<Event>;
}

impl EventBus {
    /// The sessions open now on this node.
    pub fn live(&self) -> &crate::live::Live {
        &self.inner.live
    }

    /// A bus and the receiving end the audit writer drains.
    pub fn new() -> (EventBus, mpsc::UnboundedReceiver<Event>) {
        EventBus::build(None)
    }

    /// A bus whose events `observer` sees first.
    pub fn with_observer(
        observer: Arc<dyn EventObserver>,
    ) -> (EventBus, mpsc::UnboundedReceiver<Event>) {
        EventBus::build(Some(observer))
    }

    fn build(
        observer: Option<Arc<dyn EventObserver>>,
    ) -> (EventBus, mpsc::UnboundedReceiver<Event>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            EventBus {
                inner: Arc::new(BusInner {
                    sender,
                    observer,
                    sent: std::sync::Mutex::new(0),
                    written: Arc::new(tokio::sync::watch::Sender::new(Progress::default())),
                    durable: std::sync::atomic::AtomicBool::new(false),
                    confirmed: std::sync::atomic::AtomicBool::new(false),
                    naming: std::sync::RwLock::new(None),
                    live: crate::live::Live::default(),
                }),
            },
            receiver,
        )
    }

    /// The handle the audit writer reports its progress through.
    pub fn writer_progress(&self) -> WriterProgress {
        WriterProgress(self.inner.written.clone())
    }

    /// Says event handlers act on file events: records then carry the identity of the
    /// file they name, and [`EventBus::emit_durable`] waits for the writer.
    pub fn set_durable(&self, durable: bool) {
        self.inner
            .durable
            .store(durable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes [`EventBus::emit_durable`] wait until the writer has made the record durable
    /// and answer an error when it could not (the server turns this on: a file a client
    /// was told is stored always has its record in the trail).
    pub fn set_confirmed(&self, confirmed: bool) {
        self.inner
            .confirmed
            .store(confirmed, std::sync::atomic::Ordering::Relaxed);
    }

    /// `Err` while the writer cannot make records durable (the store and the spill file
    /// both fail): a file operation asks before it starts, and is refused.
    pub fn trail_ready(&self) -> Result<(), NotDurable> {
        if !self.waits() {
            return Ok(());
        }
        match &self.inner.written.borrow().trouble {
            Some(why) => Err(NotDurable(format!(
                "refused: the audit trail cannot record it now ({why})"
            ))),
            None => Ok(()),
        }
    }

    fn waits(&self) -> bool {
        self.inner
            .confirmed
            .load(std::sync::atomic::Ordering::Relaxed)
            || self.is_durable()
    }

    /// Whether [`EventBus::emit_durable`] waits for the writer (event handlers act on
    /// file events).
    pub fn is_durable(&self) -> bool {
        self.inner
            .durable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets what decides which uploads are committed under a unique name (see
    /// [`crate::naming`]), or nothing; a reload that replaces the handlers sets it again,
    /// and uploads committing after that follow the new one.
    pub fn set_upload_naming(&self, naming: Option<Arc<dyn crate::naming::UploadNaming>>) {
        let mut kept = match self.inner.naming.write() {
            Ok(kept) => kept,
            Err(poisoned) => poisoned.into_inner(),
        };
        *kept = naming;
    }

    /// What decides which uploads are committed under a unique name, if anything does.
    pub fn upload_naming(&self) -> Option<Arc<dyn crate::naming::UploadNaming>> {
        match self.inner.naming.read() {
            Ok(kept) => kept.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Hands `event` (and whatever the observer answers) to the audit writer.
    pub fn emit(&self, event: Event) {
        self.emit_counted(event);
    }

    /// Like [`EventBus::emit`], but when the bus waits for the writer (confirmed or
    /// durable), returns only once the writer has made the record durable, and `Err` when
    /// it could not (or did not say so in time): the caller then fails the operation.
    pub async fn emit_durable(&self, event: Event) -> Result<(), NotDurable> {
        let mark = self.emit_counted(event);
        if !self.waits() {
            return Ok(());
        }
        let Some(mark) = mark else {
            return Err(NotDurable(
                "the audit writer has stopped; the operation is not recorded".to_owned(),
            ));
        };
        let mut written = self.inner.written.subscribe();
        match tokio::time::timeout(DURABLE_WAIT, written.wait_for(|p| p.dealt >= mark)).await {
            Ok(Ok(progress)) => {
                match progress.lost.iter().any(|(a, b)| (*a..=*b).contains(&mark)) {
                    false => Ok(()),
                    true => Err(NotDurable(format!(
                        "the operation's audit record could not be made durable ({})",
                        progress
                            .trouble
                            .as_deref()
                            .unwrap_or("neither the store nor the spill file took it")
                    ))),
                }
            }
            Ok(Err(_)) => Err(NotDurable(
                "the audit writer has stopped; the operation is not recorded".to_owned(),
            )),
            Err(_) => {
                tracing::warn!("audit writer did not confirm a record in time");
                Err(NotDurable(
                    "the audit trail did not confirm the operation's record in time".to_owned(),
                ))
            }
        }
    }

    /// Sends the event and the observer's answers; the number of the last one sent.
    fn emit_counted(&self, event: Event) -> Option<u64> {
        let answers = match &self.inner.observer {
            Some(observer) => observer.observe(&event),
            None => Vec::new(),
        };
        let mut last = self.send(event);
        for answer in answers {
            last = self.send(answer).or(last);
        }
        last
    }

    fn send(&self, event: Event) -> Option<u64> {
        let mut sent = self
            .inner
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.inner.sender.send(event) {
            Ok(()) => {
                *sent += 1;
                Some(*sent)
            }
            Err(mpsc::error::SendError(event)) => {
                // The writer is gone (shutdown); the record still reaches the process log.
                tracing::warn!(
                    id = event.kind.id(),
                    name = event.kind.name(),
                    account = ?event.account,
                    path = ?event.path,
                    "audit writer unavailable; event not persisted"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_typed_name_never_reads_as_a_shorter_one() {
        let account = "a".repeat(64);
        let typed = format!("{account}b");
        assert_eq!(shown_name(&typed), typed);
        let huge = "x".repeat(10_000);
        let shown = shown_name(&huge);
        assert_eq!(shown.chars().count(), SHOWN_NAME_CHARS);
        assert!(shown.ends_with('…'));
        assert!(wharf_types::AccountName::new(&shown).is_err());
    }

    #[test]
    fn ids_are_unique_sorted_and_in_their_range() {
        let mut last = 0;
        for kind in EventKind::ALL {
            assert!(kind.id() > last, "{} out of order", kind.name());
            last = kind.id();
            let range = kind.id() / 10000;
            assert!(
                (1..=6).contains(&range),
                "{} outside 1xxxx-6xxxx",
                kind.name()
            );
            assert_eq!(EventKind::from_id(kind.id()), Some(*kind));
        }
    }

    #[tokio::test]
    async fn a_durable_emit_waits_for_the_writer() {
        let (bus, mut rx) = EventBus::new();
        let progress = bus.writer_progress();
        // Not durable: returns at once.
        bus.emit_durable(Event::new(EventKind::UploadFinished))
            .await
            .unwrap();
        bus.set_durable(true);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                while let Some(_event) = rx.recv().await {
                    seen += 1;
                    if seen == 2 {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        done.store(true, std::sync::atomic::Ordering::SeqCst);
                        progress.advance(2);
                    }
                }
            })
        };
        bus.emit_durable(Event::new(EventKind::UploadFinished))
            .await
            .unwrap();
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        drop(bus);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_made_durable_fails_its_operation() {
        let (bus, mut rx) = EventBus::new();
        let progress = bus.writer_progress();
        bus.set_confirmed(true);
        assert!(bus.trail_ready().is_ok());
        let writer = tokio::spawn(async move {
            let mut seen = 0;
            while let Some(_event) = rx.recv().await {
                seen += 1;
                match seen {
                    1 => progress.advance(1),
                    2 => {
                        progress.set_trouble(Some("disk full".into()));
                        progress.lose(1);
                    }
                    _ => progress.advance(1),
                }
            }
        });
        assert!(
            bus.emit_durable(Event::new(EventKind::UploadFinished))
                .await
                .is_ok()
        );
        let refused = bus
            .emit_durable(Event::new(EventKind::UploadFinished))
            .await
            .unwrap_err();
        assert!(refused.0.contains("disk full"), "{refused}");
        assert!(bus.trail_ready().unwrap_err().0.contains("disk full"));
        assert!(
            bus.emit_durable(Event::new(EventKind::UploadFinished))
                .await
                .is_ok()
        );
        drop(bus);
        writer.await.unwrap();
    }

    #[test]
    fn docs_catalogue_matches_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md");
        let expected = EventKind::catalogue_markdown();
        if std::env::var_os("WHARF_BLESS").is_some() {
            std::fs::write(path, &expected).expect("write docs/events.md");
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            actual == expected,
            "docs/events.md differs from the catalogue in events.rs; regenerate it with \
             `WHARF_BLESS=1 cargo test -p wharf-core docs_catalogue` or \
             `cargo run -- events --catalogue > docs/events.md`"
        );
    }
}
