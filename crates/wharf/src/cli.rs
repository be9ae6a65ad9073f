//! The command line (DESIGN.md §1).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Wharf managed file transfer server.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        default_value = "wharf.toml",
        env = "WHARF_CONFIG"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every configured service (creates a default configuration on first run).
    Serve {
        /// Stand by, listening on nothing, until `wharf takeover` (or, on PostgreSQL, until
        /// the active node's heartbeat stops); then serve.
        #[arg(long)]
        standby: bool,
        /// The active node to stand by for (default: this node's own name).
        #[arg(long = "for", requires = "standby", value_name = "NODE")]
        active: Option<String>,
    },
    /// Make this machine's standby (`wharf serve --standby`) serve now; waits until it does.
    Takeover {
        /// Seconds to wait for the standby.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Write a default configuration and data folder without starting anything.
    Init {
        /// Folder to create them in.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Use this store instead of a new SQLite file: `postgres://USER@HOST:PORT/DB` joins
        /// (or starts) a cluster; the `users` group and the administrator are made only if the
        /// store has none.
        #[arg(long)]
        store: Option<String>,
        /// The store's password, as `env:NAME` or `file:PATH` (written to the configuration).
        #[arg(long, requires = "store")]
        store_password: Option<String>,
        /// This node's name, unique in the cluster (default wharf-1).
        #[arg(long)]
        node: Option<String>,
    },
    /// Validate the configuration; errors name file, line and key.
    CheckConfig,
    /// Write the text of the PDF document on standard input to standard output (what
    /// content checks run, in a process of its own with its memory and CPU time capped).
    #[command(hide = true)]
    PdfText,
    /// Make this node's running server apply its configuration file again (as SIGHUP does):
    /// services started, retired or replaced, the certificate read again, handlers replaced.
    Reload,
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Import accounts and groups from a TOML file (creates and updates; idempotent).
    Apply {
        /// File written by `wharf export` or by hand.
        file: PathBuf,
    },
    /// Export accounts and groups as TOML (to standard output).
    Export,
    /// Query the audit trail.
    Events(EventsArgs),
    /// Audit trail maintenance.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Banned client networks.
    #[command(subcommand)]
    Ban(BanCommand),
    /// Manager administrators and their API tokens.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Event handlers' queue.
    #[command(subcommand)]
    Handler(HandlerCommand),
    /// Client-side transfers: list them, run one now, see what their runs did.
    #[command(subcommand)]
    Transfer(TransferCommand),
    /// The store as a whole.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The nodes sharing this store.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Write a backup archive (store snapshot, configuration, keys, certificates and every
    /// file the configuration names) while the server runs; `backup verify FILE` checks one.
    Backup(BackupArgs),
    /// Bring a node back from a backup archive into a new folder.
    Restore(RestoreArgs),
}

/// `wharf backup FILE` or `wharf backup verify FILE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub check: Option<BackupCommand>,
    /// The archive to write (a new file).
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    /// Seal the archive with a passphrase, as `env:NAME` or `file:PATH` (the age format).
    #[arg(long)]
    pub passphrase: Option<String>,
}

/// `wharf backup verify`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check an archive whole (every digest, the store's audit chains) without restoring it.
    Verify {
        /// The archive.
        file: PathBuf,
        /// Its passphrase, as `env:NAME` or `file:PATH`, if it is sealed.
        #[arg(long)]
        passphrase: Option<String>,
    },
}

/// `wharf restore FILE --into DIR`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive.
    pub file: PathBuf,
    /// The folder to restore into: new or empty (see --force).
    #[arg(long)]
    pub into: PathBuf,
    /// The archive's passphrase, as `env:NAME` or `file:PATH`, if it is sealed.
    #[arg(long)]
    pub passphrase: Option<String>,
    /// Restore the store into this one instead: `sqlite:PATH` (relative to DIR) or
    /// `postgres://USER@HOST:PORT/DB` (an empty database); the restored configuration is
    /// changed to use it.
    #[arg(long)]
    pub store: Option<String>,
    /// That PostgreSQL store's password, as `env:NAME` or `file:PATH` (written to the
    /// configuration).
    #[arg(long, requires = "store")]
    pub store_password: Option<String>,
    /// The CA certificate (PEM) of that PostgreSQL server (written to the configuration).
    #[arg(long, requires = "store")]
    pub store_ca_file: Option<String>,
    /// Give the restored node this name (`[server] name`): the standby of a pair sharing a
    /// PostgreSQL store needs a name of its own.
    #[arg(long)]
    pub node: Option<String>,
    /// Leave the store out: the configuration keeps naming the PostgreSQL store it named
    /// (the standby of a pair sharing that store).
    #[arg(long, conflicts_with = "store")]
    pub no_store: bool,
    /// Write over a folder that is not empty, and over different files at the absolute
    /// paths the backup names.
    #[arg(long)]
    pub force: bool,
}

/// `wharf cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the nodes: state (up, down, stopped), version, sessions open, last seen, services.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a node that no longer runs from the list (a live node is refused).
    Forget {
        /// The node's name.
        node: String,
    },
    /// The configuration every node shares ([[authentication]], [ban], [password_policy],
    /// [[handler]]), kept in the store with a revision number.
    #[command(subcommand)]
    Configuration(ClusterConfigurationCommand),
}

/// `wharf cluster configuration ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterConfigurationCommand {
    /// Print the newest revision (or `--revision N`); before any, this file's shared
    /// sections, ready to publish.
    Show {
        /// The revision to print.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// List the revisions: number, who published it, when.
    History,
    /// Check FILE as the next revision on this node, and publish it: every node applies it
    /// within two seconds.
    Publish {
        /// A TOML file holding only the shared sections.
        file: PathBuf,
        /// The revision FILE was edited from; refused if another was published since.
        /// Without it, the one `show` named in FILE's first line, else the newest now.
        #[arg(long)]
        head: Option<i64>,
    },
}

/// `wharf store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this node's SQLite store, whole, into a new PostgreSQL database (for a cluster).
    Copy {
        /// `postgres://USER@HOST:PORT/DB` (an empty database).
        #[arg(long)]
        to: String,
        /// Its password, as `env:NAME` or `file:PATH`.
        #[arg(long)]
        password: Option<String>,
        /// The CA certificate (PEM) that signed its server's certificate.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

/// `wharf handler ...`.
#[derive(Debug, Subcommand)]
pub enum HandlerCommand {
    /// List queued, running, done and failed handler jobs (newest first).
    Jobs {
        /// Only jobs in this state: queued, running, done or failed.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `wharf transfer ...`.
#[derive(Debug, Subcommand)]
pub enum TransferCommand {
    /// The configured transfers: where from, where to, when, and their last run.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run one transfer now, in this process (a bar per file on a terminal, a line per
    /// file otherwise); exits non-zero when a file failed.
    Run {
        /// The transfer's name.
        name: String,
        /// Seconds to wait when a node is running it now.
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// A transfer's runs (newest first), or with --files its files and where each stands.
    History {
        /// The transfer's name.
        name: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// List files rather than runs.
        #[arg(long)]
        files: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `wharf ban ...`.
#[derive(Debug, Subcommand)]
pub enum BanCommand {
    /// List the bans in force.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Ban a client network now (every running server follows within two seconds).
    Add {
        /// An address (banned by its network under `[ban]`'s prefixes) or a network.
        address: String,
        /// Length of the ban in seconds (default: `[ban] ban_time`).
        #[arg(long)]
        seconds: Option<u64>,
        /// Why, as `wharf ban list` will show it.
        #[arg(long, default_value = "banned by an administrator")]
        reason: String,
    },
    /// Lift a ban and forget the network's strikes (every running server follows within
    /// two seconds).
    Remove {
        /// The banned network as listed, or an address inside it.
        address: String,
    },
}

/// `wharf admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Add a Manager administrator; its password is read from standard input.
    Add {
        /// Login name.
        name: String,
        /// admin (everything), operator (accounts, groups, bans, jobs, sessions) or auditor
        /// (reads only).
        #[arg(long, default_value = "admin")]
        role: String,
        /// Read the password from standard input (required: a password is never an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Its logins need a one-time code (enrol one with `wharf admin totp enable NAME`).
        #[arg(long)]
        require_second_factor: bool,
    },
    /// List administrators.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one administrator.
    Show {
        /// Login name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove an administrator and its API tokens.
    Remove {
        /// Login name.
        name: String,
    },
    /// Set an administrator's password (read from standard input).
    SetPassword {
        /// Login name.
        name: String,
        /// Read the password from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set an administrator's role: admin, operator or auditor.
    Role {
        /// Login name.
        name: String,
        /// The new role.
        role: String,
    },
    /// Enable or disable an administrator.
    Enable {
        /// Login name.
        name: String,
    },
    /// Disable an administrator (its sessions and tokens stop working at their next request).
    Disable {
        /// Login name.
        name: String,
    },
    /// One-time codes (TOTP) for an administrator.
    #[command(subcommand)]
    Totp(AdminTotpCommand),
    /// API tokens for automation.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `wharf admin totp ...`.
#[derive(Debug, Subcommand)]
pub enum AdminTotpCommand {
    /// Enrol one-time codes: prints the secret, a QR code and recovery codes once.
    Enable {
        /// Login name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove the enrolled one-time codes (a lost phone).
    Disable {
        /// Login name.
        name: String,
    },
    /// Require (or with --off, stop requiring) a one-time code at every login.
    Require {
        /// Login name.
        name: String,
        /// Stop requiring it.
        #[arg(long)]
        off: bool,
    },
}

/// `wharf admin token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token; it is printed once.
    Add {
        /// The token's name (unique).
        name: String,
        /// The administrator it acts as.
        #[arg(long = "admin")]
        admin: String,
        /// Its role, at most its administrator's: admin, operator or auditor.
        #[arg(long)]
        role: String,
        /// Days until it expires (1 to 3650).
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List API tokens (never the tokens themselves).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token.
    Remove {
        /// The token's name.
        name: String,
    },
}

/// `wharf account ...`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account.
    Add {
        /// Account name.
        name: String,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
        /// OpenSSH public key file (may repeat).
        #[arg(long = "ssh-key")]
        ssh_keys: Vec<PathBuf>,
        /// Home folder (absolute); default: the first group's template.
        #[arg(long)]
        home: Option<String>,
        /// Group (may repeat; order is rule order). Default: users.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Create the account disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        access: AccessArgs,
        #[command(flatten)]
        expiry: ExpiryArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        contact: ContactArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Change where an account may log in from, when it expires, its limits and its e-mail
    /// address.
    Set {
        /// Account name.
        name: String,
        #[command(flatten)]
        access: AccessArgs,
        #[command(flatten)]
        reset: ResetArgs,
        #[command(flatten)]
        expiry: ExpiryArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        contact: ContactArgs,
    },
    /// List accounts.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one account.
    Show {
        /// Account name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove an account (its files stay).
    Remove {
        /// Account name.
        name: String,
    },
    /// Set the password, read from standard input.
    SetPassword {
        /// Account name.
        name: String,
        /// Read the password from standard input (the default; kept for symmetry with add).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Add an OpenSSH public key.
    AddKey {
        /// Account name.
        name: String,
        /// Public key file.
        file: PathBuf,
    },
    /// Allow logins.
    Enable {
        /// Account name.
        name: String,
    },
    /// Refuse logins.
    Disable {
        /// Account name.
        name: String,
    },
    /// One-time codes (TOTP, RFC 6238) as a second factor.
    #[command(subcommand)]
    Totp(TotpCommand),
}

/// `wharf account totp ...`.
#[derive(Debug, Subcommand)]
pub enum TotpCommand {
    /// Enrol (or re-enrol): prints the secret, an otpauth URI, a QR code and recovery codes.
    Enable {
        /// Account name.
        name: String,
        /// Machine-readable output (no QR code).
        #[arg(long)]
        json: bool,
    },
    /// Remove the second factor (logins then fail if one is required).
    Disable {
        /// Account name.
        name: String,
    },
    /// Replace the recovery codes (the old ones stop working).
    RecoveryCodes {
        /// Account name.
        name: String,
    },
}

/// Where logins may come from, and whether they need a one-time code.
#[derive(Debug, Args, Default)]
pub struct AccessArgs {
    /// Only clients in this network may log in (203.0.113.0/24, 2001:db8::/48 or one
    /// address); may repeat. Replaces the earlier list.
    #[arg(long = "allow-from", value_name = "NETWORK")]
    pub allow_from: Vec<String>,
    /// Clients in this network may not log in; may repeat. Replaces the earlier list.
    #[arg(long = "deny-from", value_name = "NETWORK")]
    pub deny_from: Vec<String>,
    /// Logins need a one-time code (true or false); without one enrolled they fail.
    #[arg(long, value_name = "BOOL")]
    pub require_second_factor: Option<bool>,
}

/// Forgetting both address lists (only where they may already hold something).
#[derive(Debug, Args, Default)]
pub struct ResetArgs {
    /// Empty both lists (any address may log in).
    #[arg(long, conflicts_with_all = ["allow_from", "deny_from"])]
    pub any_address: bool,
}

/// When an account stops logging in (groups have no expiry).
#[derive(Debug, Args, Default)]
pub struct ExpiryArgs {
    /// The date (YYYY-MM-DD, from 00:00 UTC) or time (RFC 3339) from which logins are
    /// refused, or "never".
    #[arg(long, value_name = "DATE")]
    pub expires: Option<String>,
}

/// What an account, or each member of a group, may cost the server.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Largest file a session may make: bytes, or a number with K, M, G or T (KiB … TiB);
    /// "none" removes the bound. The smallest of the account's, its groups' and the
    /// service's bounds applies (default 64 GiB).
    #[arg(long, value_name = "SIZE")]
    pub max_file_size: Option<String>,
}

/// Where notifications about an account or group go (another part of Wharf sends them).
#[derive(Debug, Args, Default)]
pub struct ContactArgs {
    /// E-mail address for notifications: one bare address, such as ops@example.org; on
    /// `set`, "" removes it.
    #[arg(long, value_name = "ADDRESS")]
    pub email: Option<String>,
}

/// `wharf group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Add {
        /// Group name.
        name: String,
        /// Home folder template, such as /srv/wharf/${USER}.
        #[arg(long)]
        home_template: Option<String>,
        /// Create members' home folders at first login.
        #[arg(long)]
        create_home: bool,
        /// Rule PATTERN=VERBS allowing VERBS (comma-separated, or "all"); may repeat.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Rule PATTERN=VERBS denying VERBS; may repeat. Rules keep command-line order.
        #[arg(long = "deny")]
        deny: Vec<String>,
        /// Allowed protocols (comma-separated; default all).
        #[arg(long)]
        protocols: Option<String>,
        /// Upload mode: atomic (default) or resumable.
        #[arg(long)]
        upload_mode: Option<String>,
        #[command(flatten)]
        access: AccessArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        contact: ContactArgs,
    },
    /// Change where members may log in from, their limits and the group's e-mail address.
    Set {
        /// Group name.
        name: String,
        #[command(flatten)]
        access: AccessArgs,
        #[command(flatten)]
        reset: ResetArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        contact: ContactArgs,
    },
    /// List groups.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one group.
    Show {
        /// Group name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a group (refused while accounts are members).
    Remove {
        /// Group name.
        name: String,
    },
}

/// `wharf events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only records since this time: RFC 3339 (2026-11-25T10:00:00Z) or an age (90s, 15m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this event id (20011), or a range of ids (30000-30099).
    #[arg(long)]
    pub id: Option<String>,
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only this protocol (sftp, scp, ssh, ftp, ftps, http, https, webdav, admin).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Only successes or only failures (success, failure).
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only the records of this node of the cluster.
    #[arg(long)]
    pub node: Option<String>,
    /// Only records older than record SEQ (the next page back: the first number shown).
    #[arg(long, value_name = "SEQ")]
    pub before: Option<i64>,
    /// Most records shown (the newest).
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// Keep printing new records as they arrive.
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Print the event catalogue (Markdown) instead.
    #[arg(long)]
    pub catalogue: bool,
}

/// `wharf audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every node's hash chain, reporting each node; names a broken chain's first
    /// broken record.
    Verify {
        /// A copy kept elsewhere (a syslog server's file, a JSON-lines sink): every record
        /// in it must be in the store, unchanged. May repeat.
        #[arg(long)]
        witness: Vec<std::path::PathBuf>,
        /// Another folder holding archive files (another node's `[audit] archive_dir`);
        /// this node's own is always read. May repeat.
        #[arg(long)]
        archives: Vec<std::path::PathBuf>,
    },
    /// Move this node's records older than `[audit] retention_days` (or `--older-than`)
    /// from the store into archive files now, as the running server does each hour.
    Archive {
        /// An age instead of the configured retention: `90d`, `12h`, `30m`.
        #[arg(long)]
        older_than: Option<String>,
    },
}
